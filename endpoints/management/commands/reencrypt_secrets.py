from django.core.management.base import BaseCommand, CommandError

from endpoints.services import endpoint_secrets_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every signing secret with the newest of WEBHOOKS_ENCRYPTION_KEYS (after adding a key)."

    def handle(self, *args, **options):
        try:
            count = endpoint_secrets_reencrypt()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the signing secrets of {count} endpoint(s)."))
