from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from clientflow_webhooks.errors import validation_message
from clientflow_webhooks.services import workspace_create


class Command(BaseCommand):
    help = "Create a workspace owned by an existing user."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner", required=True, help="username of an existing user")

    def handle(self, *args, slug: str, name: str, owner: str, **options):
        try:
            workspace = workspace_create(slug=slug, name=name, owner_username=owner)
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Created workspace {workspace.slug} owned by {owner}."))
