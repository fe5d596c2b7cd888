"""Writes to endpoints. Every interface (API, pages, admin, commands) goes through here."""

import base64
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction

from clientflow_webhooks.models import Workspace

from . import event_types as catalogue
from .models import Endpoint, EndpointEventType

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
URL_MAX_LENGTH = Endpoint._meta.get_field("url").max_length
DESCRIPTION_MAX_LENGTH = Endpoint._meta.get_field("description").max_length


def new_secret() -> str:
    """``whsec_`` and 32 random bytes in standard base64, the Standard Webhooks format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def validate_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise ValidationError({"url": ["This field is required."]})
    if len(url) > URL_MAX_LENGTH:
        raise ValidationError({"url": [f"Ensure this URL has at most {URL_MAX_LENGTH} characters."]})
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme and scheme != "https":
        raise ValidationError({"url": ["HTTPS is required."]})
    try:
        URLValidator(schemes=["https"])(url)
    except ValidationError:
        raise ValidationError({"url": ["Enter a valid URL, such as https://example.com/webhooks."]}) from None
    return url


def validate_event_types(event_types: Iterable[str]) -> list[str]:
    if isinstance(event_types, str):
        event_types = [event_types]
    names = sorted(set(event_types or ()))
    if not names:
        raise ValidationError({"event_types": ["Choose at least one event type."]})
    if catalogue.TEST_EVENT.name in names:
        raise ValidationError(
            {"event_types": [f"{catalogue.TEST_EVENT.name} is sent only by Send Test Event and cannot be chosen."]}
        )
    unknown = [name for name in names if name not in catalogue.SUBSCRIBABLE_NAMES]
    if unknown:
        raise ValidationError({"event_types": [f"Unknown event type: {', '.join(map(str, unknown))}."]})
    return names


def validate_description(description: str) -> str:
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise ValidationError({"description": [f"Ensure this field has at most {DESCRIPTION_MAX_LENGTH} characters."]})
    return description


@transaction.atomic
def endpoint_create(
    *, workspace: Workspace, url: str, event_types: Iterable[str], description: str = ""
) -> tuple[Endpoint, str]:
    """Create an endpoint; returns it and its signing secret, which is shown only now."""
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, object] = {}
    for name, validate, value in (
        ("url", validate_url, url),
        ("event_types", validate_event_types, event_types),
        ("description", validate_description, description),
    ):
        try:
            cleaned[name] = validate(value)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    secret = new_secret()
    endpoint = Endpoint.objects.create(
        workspace=workspace, url=cleaned["url"], description=cleaned["description"], secret=secret
    )
    EndpointEventType.objects.bulk_create(
        EndpointEventType(endpoint=endpoint, event_type=name) for name in cleaned["event_types"]
    )
    return endpoint, secret


def endpoint_disable(*, endpoint: Endpoint) -> Endpoint:
    """Pause deliveries; the configuration and the secret stay as they are."""
    return _set_enabled(endpoint=endpoint, enabled=False)


def endpoint_enable(*, endpoint: Endpoint) -> Endpoint:
    """Resume deliveries, signed with the same secret as before."""
    return _set_enabled(endpoint=endpoint, enabled=True)


def _set_enabled(*, endpoint: Endpoint, enabled: bool) -> Endpoint:
    if endpoint.enabled != enabled:
        endpoint.enabled = enabled
        endpoint.save(update_fields=["enabled", "updated_at"])
    return endpoint
