import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from clientflow_webhooks.errors import validation_message
from clientflow_webhooks.models import Workspace
from deliveries.services import event_publish
from endpoints.event_types import BY_NAME, SUBSCRIBABLE_NAMES


class Command(BaseCommand):
    help = "Publish an event to a workspace's subscribed endpoints."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="workspace slug")
        parser.add_argument("event_type", help="e.g. invoice.paid")
        data = parser.add_mutually_exclusive_group()
        data.add_argument(
            "--data", default="{}", help="the event data, a JSON object (its schema: GET /api/v1/event-types/)"
        )
        data.add_argument("--example", action="store_true", help="send the type's documented example data")

    def handle(self, *args, slug: str, event_type: str, data: str, example: bool, **options):
        workspace = Workspace.objects.filter(slug=slug).first()
        if workspace is None:
            raise CommandError(f"No workspace with the slug {slug!r}.")
        if example and event_type in SUBSCRIBABLE_NAMES:
            parsed = BY_NAME[event_type].example
        else:
            try:
                parsed = json.loads(data)
            except json.JSONDecodeError as exc:
                raise CommandError(f"--data is not valid JSON: {exc}") from None
        try:
            event = event_publish(workspace=workspace, event_type=event_type, data=parsed)
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        count = event.deliveries.count()
        self.stdout.write(self.style.SUCCESS(f"Published {event.id} ({event_type}) to {count} endpoint(s)."))
