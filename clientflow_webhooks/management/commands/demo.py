from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from clientflow_webhooks.models import Membership, Workspace

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - development only; refused without DEBUG


class Command(BaseCommand):
    help = "Create (or keep) the development workspace 'demo' and its owner demo/demo."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("The demo account has a known password; it is created only with DEBUG on.")
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        workspace, _ = Workspace.objects.get_or_create(slug="demo", defaults={"name": "Demo agency"})
        Membership.objects.get_or_create(user=user, workspace=workspace, defaults={"role": Membership.Role.OWNER})
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo workspace 'demo'; sign in as {DEMO_USERNAME} / {DEMO_PASSWORD} at http://127.0.0.1:8000/admin/"
            )
        )
