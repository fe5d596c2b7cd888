from django.conf import settings
from django.core.checks import Warning, register


@register()
def encryption_keys(app_configs, **kwargs):
    if getattr(settings, "WEBHOOKS_ENCRYPTION_KEYS_DERIVED", False):
        return [
            Warning(
                "WEBHOOKS_ENCRYPTION_KEYS is not set: signing secrets are encrypted with a key derived from "
                "SECRET_KEY. Fine for development; production refuses to start without keys.",
                id="endpoints.W001",
            )
        ]
    return []
