from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from clientflow_webhooks.errors import validation_message
from clientflow_webhooks.models import Membership, Workspace
from clientflow_webhooks.services import membership_set


class Command(BaseCommand):
    help = "Add a user to a workspace, or change their role."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="workspace slug")
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Membership.Role.values)

    def handle(self, *args, slug: str, username: str, role: str, **options):
        workspace = Workspace.objects.filter(slug=slug).first()
        if workspace is None:
            raise CommandError(f"No workspace with the slug {slug!r}.")
        try:
            membership_set(workspace=workspace, username=username, role=role)
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{username} is now {role} of {slug}."))
