"""Writes to endpoints. Every interface (API, pages, admin, commands) goes through here."""

import base64
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from clientflow_webhooks.models import Workspace
from deliveries.services import deliveries_cancel

from . import addresses
from . import event_types as catalogue
from .models import Endpoint, EndpointAuditEntry, EndpointEventType

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
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443
    except (ValidationError, ValueError):
        raise ValidationError({"url": ["Enter a valid URL, such as https://example.com/webhooks."]}) from None
    reason = addresses.host_refusal(host, port)
    if reason:
        raise ValidationError(
            {"url": [f"This address is not allowed: {reason}. Webhooks go to public addresses only."]}
        )
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


def _audit(*, endpoint: Endpoint, action: str, actor: AbstractBaseUser | None, changes: dict | None = None) -> None:
    EndpointAuditEntry.objects.create(
        workspace_id=endpoint.workspace_id,
        endpoint_id=endpoint.id,
        action=action,
        actor=actor if actor is not None and actor.is_authenticated else None,
        changes=changes or {},
    )


def _clean(**fields: tuple[Callable[[Any], Any], Any]) -> dict[str, Any]:
    """Validate each given field with its validator; report every bad field at once."""
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for name, (validate, value) in fields.items():
        try:
            cleaned[name] = validate(value)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return cleaned


@sensitive_variables("secret")
@transaction.atomic
def endpoint_create(
    *,
    workspace: Workspace,
    url: str,
    event_types: Iterable[str],
    description: str = "",
    actor: AbstractBaseUser | None = None,
) -> tuple[Endpoint, str]:
    """Create an endpoint; returns it and its signing secret, which is shown only now."""
    cleaned = _clean(
        url=(validate_url, url),
        event_types=(validate_event_types, event_types),
        description=(validate_description, description),
    )
    # Locked so that two creations at once cannot both squeeze under the limit.
    Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
    limit = settings.WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE
    if Endpoint.objects.filter(workspace=workspace).count() >= limit:
        raise ValidationError(f"A workspace can have at most {limit} endpoints. Delete one to add another.")
    secret = new_secret()
    endpoint = Endpoint.objects.create(
        workspace=workspace, url=cleaned["url"], description=cleaned["description"], secret=secret
    )
    EndpointEventType.objects.bulk_create(
        EndpointEventType(endpoint=endpoint, event_type=name) for name in cleaned["event_types"]
    )
    _audit(endpoint=endpoint, action=EndpointAuditEntry.Action.CREATED, actor=actor)
    return endpoint, secret


_UNSET: Any = object()


@transaction.atomic
def endpoint_update(
    *,
    endpoint: Endpoint,
    actor: AbstractBaseUser | None = None,
    url: str = _UNSET,
    event_types: Iterable[str] = _UNSET,
    description: str = _UNSET,
) -> Endpoint:
    """Change the URL, event types or description; the secret stays the same."""
    # Serialise concurrent edits of one endpoint (two PATCHes adding the same event type).
    Endpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
    given = {
        name: (validate, value)
        for name, validate, value in (
            ("url", validate_url, url),
            ("event_types", validate_event_types, event_types),
            ("description", validate_description, description),
        )
        if value is not _UNSET
    }
    cleaned = _clean(**given)
    changes: dict[str, list[Any]] = {}
    for name in ("url", "description"):
        if name in cleaned and cleaned[name] != getattr(endpoint, name):
            changes[name] = [getattr(endpoint, name), cleaned[name]]
            setattr(endpoint, name, cleaned[name])
    if "event_types" in cleaned:
        old = endpoint.event_types
        if cleaned["event_types"] != old:
            changes["event_types"] = [old, cleaned["event_types"]]
            endpoint.event_type_rows.exclude(event_type__in=cleaned["event_types"]).delete()
            EndpointEventType.objects.bulk_create(
                EndpointEventType(endpoint=endpoint, event_type=name)
                for name in cleaned["event_types"]
                if name not in old
            )
            # Drop the stale prefetch so endpoint.event_types reads the new rows.
            getattr(endpoint, "_prefetched_objects_cache", {}).pop("event_type_rows", None)
    if changes:
        # Only what changed: a full save of a copy read earlier could write back an old
        # secret that a rotation has since replaced.
        endpoint.save(update_fields=[name for name in ("url", "description") if name in changes] + ["updated_at"])
        _audit(endpoint=endpoint, action=EndpointAuditEntry.Action.UPDATED, actor=actor, changes=changes)
    return endpoint


@transaction.atomic
def endpoint_disable(
    *, endpoint: Endpoint, actor: AbstractBaseUser | None = None, reason: str = "", automatically: bool = False
) -> Endpoint:
    """Pause deliveries; the configuration and the secret stay as they are. Idempotent.

    `reason` says why, on the pages and in the API; `automatically` marks the system's own
    disable of a dead endpoint (`deliveries.operations.endpoints_auto_disable`)."""
    return _set_enabled(endpoint=endpoint, enabled=False, actor=actor, reason=reason, automatically=automatically)


@transaction.atomic
def endpoint_enable(*, endpoint: Endpoint, actor: AbstractBaseUser | None = None) -> Endpoint:
    """Resume deliveries, signed with the same secret as before; forget why it was
    disabled. Idempotent."""
    return _set_enabled(endpoint=endpoint, enabled=True, actor=actor)


def _set_enabled(
    *, endpoint: Endpoint, enabled: bool, actor: AbstractBaseUser | None, reason: str = "", automatically: bool = False
) -> Endpoint:
    if endpoint.enabled != enabled:
        endpoint.enabled = enabled
        endpoint.disabled_reason = "" if enabled else reason
        endpoint.disabled_automatically_at = timezone.now() if automatically and not enabled else None
        endpoint.save(update_fields=["enabled", "disabled_reason", "disabled_automatically_at", "updated_at"])
        action = EndpointAuditEntry.Action.ENABLED if enabled else EndpointAuditEntry.Action.DISABLED
        _audit(
            endpoint=endpoint,
            action=action,
            actor=actor,
            changes={"disabled_reason": [None, reason]} if reason else None,
        )
    return endpoint


OVERLAP_DEFAULT = timedelta(hours=24)
OVERLAP_MAX = timedelta(days=7)
OVERLAP_RANGE_MESSAGE = "The overlap must be between none (0) and 7 days."


def validate_overlap(overlap: timedelta) -> timedelta:
    if not isinstance(overlap, timedelta) or not timedelta(0) <= overlap <= OVERLAP_MAX:
        raise ValidationError({"overlap": [OVERLAP_RANGE_MESSAGE]})
    return overlap


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@sensitive_variables("secret", "previous")
@transaction.atomic
def endpoint_rotate_secret(
    *, endpoint: Endpoint, overlap: timedelta = OVERLAP_DEFAULT, actor: AbstractBaseUser | None = None
) -> str:
    """Give the endpoint a new signing secret and return it; it is shown only now.

    For `overlap` (none to 7 days) the secret it replaces keeps signing deliveries too,
    so that a receiver that still knows only that one goes on verifying them while it is
    switched over. Rotating again during an overlap ends the older secret at once.
    """
    validate_overlap(overlap)
    # Locked and read again: two rotations at once must not both keep the same "previous".
    locked = Endpoint.objects.select_for_update().only("id", "secret", "previous_secret_expires_at").get(pk=endpoint.pk)
    now = timezone.now()
    was = locked.overlap_ends_at(now=now)
    secret = new_secret()
    previous = locked.secret if overlap else None
    expires_at = now + overlap if overlap else None
    Endpoint.objects.filter(pk=endpoint.pk).update(
        secret=secret, previous_secret=previous, previous_secret_expires_at=expires_at, updated_at=now
    )
    endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at = secret, previous, expires_at
    changes = {"previous_secret_expires_at": [_iso(was), _iso(expires_at)]} if was or expires_at else {}
    _audit(endpoint=endpoint, action=EndpointAuditEntry.Action.SECRET_ROTATED, actor=actor, changes=changes)
    return secret


@transaction.atomic
def endpoint_end_overlap(*, endpoint: Endpoint, actor: AbstractBaseUser | None = None) -> bool:
    """Stop signing with the previous secret now, before its overlap runs out. Returns
    whether there was an overlap to end; ending none is harmless."""
    locked = Endpoint.objects.select_for_update().only("id", "previous_secret_expires_at").get(pk=endpoint.pk)
    now = timezone.now()
    was = locked.overlap_ends_at(now=now)
    # Also forgets a previous secret whose overlap has run out: it is of no more use.
    cleared = {"previous_secret": None, "previous_secret_expires_at": None}
    Endpoint.objects.filter(pk=endpoint.pk).update(**cleared, **({"updated_at": now} if was else {}))
    endpoint.previous_secret = endpoint.previous_secret_expires_at = None
    if was is None:
        return False
    changes = {"previous_secret_expires_at": [_iso(was), None]}
    _audit(endpoint=endpoint, action=EndpointAuditEntry.Action.OVERLAP_ENDED, actor=actor, changes=changes)
    return True


@transaction.atomic
def endpoint_delete(*, endpoint: Endpoint, actor: AbstractBaseUser | None = None) -> None:
    """Delete the endpoint. Its deliveries stay as history; pending ones end cancelled."""
    _audit(
        endpoint=endpoint, action=EndpointAuditEntry.Action.DELETED, actor=actor, changes={"url": [endpoint.url, None]}
    )
    deliveries_cancel(endpoint=endpoint, reason="The endpoint was deleted.")
    endpoint.delete()


def endpoint_secrets_reencrypt(*, batch_size: int = 500) -> int:
    """Re-encrypt every signing secret, current and previous, with the newest encryption
    key, in batches. A previous secret whose overlap has run out is dropped instead.

    Reading decrypts with whichever key made a secret; saving encrypts with the newest.
    Raises ValueError, and changes nothing in that batch, if a secret cannot be decrypted.
    """
    count = 0
    last_id = 0
    while True:
        with transaction.atomic():
            # Locked, so that a rotation running meanwhile is not overwritten with the old secret.
            batch = list(
                Endpoint.objects.select_for_update()
                .filter(id__gt=last_id)
                .order_by("id")
                .only("id", "secret", "previous_secret", "previous_secret_expires_at")[:batch_size]
            )
            now = timezone.now()
            for endpoint in batch:
                keep = endpoint.previous_secret_valid(at=now)
                Endpoint.objects.filter(id=endpoint.id).update(
                    secret=endpoint.secret,
                    previous_secret=endpoint.previous_secret if keep else None,
                    previous_secret_expires_at=endpoint.previous_secret_expires_at if keep else None,
                )
        if not batch:
            return count
        count += len(batch)
        last_id = batch[-1].id
