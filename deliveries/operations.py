"""Writes that keep a long-running system healthy, run by beat (tasks.py): disabling
endpoints that have been dead for days, and deleting what is past its retention.

Kept apart from services.py, the delivery pipeline; neither touches a delivery in flight.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clientflow_webhooks.models import Workspace
from endpoints.models import Endpoint, EndpointAuditEntry
from endpoints.services import endpoint_disable

from . import metrics, notices, selectors
from .models import Delivery

logger = logging.getLogger(__name__)


def endpoints_auto_disable(*, now: datetime | None = None) -> list[Endpoint]:
    """Disable every enabled endpoint whose deliveries have all ended as dead letters for
    WEBHOOKS_AUTO_DISABLE_DAYS, with at least WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS of them
    in that time (`selectors.endpoints_failing`), unless it was enabled within that time: a
    re-enable starts the count again. Records why, and emails the workspace's owners and
    admins. Returns the endpoints it disabled."""
    days = settings.WEBHOOKS_AUTO_DISABLE_DAYS
    if not days:
        return []
    now = now or timezone.now()
    period = timedelta(days=days)
    minimum = settings.WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS
    disabled = []
    for failing in selectors.endpoints_failing(now=now, period=period, minimum=minimum):
        endpoint = _auto_disable(failing=failing, now=now, period=period)
        if endpoint is not None:
            disabled.append(endpoint)
    return disabled


@transaction.atomic
def _auto_disable(*, failing: selectors.FailingEndpoint, now: datetime, period: timedelta) -> Endpoint | None:
    # Locked, and judged again: a person may have disabled, enabled or deleted it meanwhile.
    endpoint = Endpoint.objects.select_for_update().filter(id=failing.endpoint_id, enabled=True).first()
    enabled_recently = EndpointAuditEntry.objects.filter(
        endpoint_id=failing.endpoint_id, action=EndpointAuditEntry.Action.ENABLED, created_at__gt=now - period
    ).exists()
    if endpoint is None or enabled_recently:
        return None
    since = now - period
    reason = (
        f"Every delivery for {settings.WEBHOOKS_AUTO_DISABLE_DAYS:g} days ended as a dead letter: "
        f"{failing.dead_letters} of them since {since:%Y-%m-%d %H:%M} UTC"
        + (f", the last one because of {failing.last_error}." if failing.last_error else ".")
    )
    endpoint_disable(endpoint=endpoint, reason=reason, automatically=True)
    context = {"endpoint_id": endpoint.id, "workspace_id": endpoint.workspace_id, "count": failing.dead_letters}
    logger.warning("endpoint %s disabled automatically: %s", endpoint.id, reason, extra=context)
    transaction.on_commit(metrics.ENDPOINTS_AUTO_DISABLED.inc)
    transaction.on_commit(
        lambda: notices.notice_enqueue(
            endpoint_id=endpoint.id, kind=notices.AUTO_DISABLED, details={"dead_letters": failing.dead_letters}
        )
    )
    return endpoint


# --- retention ------------------------------------------------------------------------

RETENTION_BATCH = 1000
# A run stops after this long; the next one (an hour later) goes on where it stopped.
RETENTION_BUDGET_SECONDS = 300


@dataclass
class Purged:
    deliveries: int = 0  # succeeded and cancelled ones
    dead_letters: int = 0
    events: int = 0


def deliveries_purge(
    *, now: datetime | None = None, batch_size: int = RETENTION_BATCH, budget_seconds: float = RETENTION_BUDGET_SECONDS
) -> Purged:
    """Delete what is past its retention, with its attempts and replay records:

    - succeeded and cancelled deliveries that ended WEBHOOKS_RETENTION_DAYS ago,
    - dead letters that ended WEBHOOKS_DEAD_LETTER_RETENTION_DAYS ago (one replayed and
      delivered since is an ordinary succeeded delivery, kept from its new end),
    - events created WEBHOOKS_RETENTION_DAYS ago that no delivery references any more.

    In batches of `batch_size`, each its own short transaction that locks only the rows it
    deletes (rows another transaction holds are skipped until the next batch or run), so
    that workers, replays and the pages never wait on it for long."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or timezone.now()
    stop_at = time.monotonic() + budget_seconds
    kept_since = now - timedelta(days=settings.WEBHOOKS_RETENTION_DAYS)
    dead_kept_since = now - timedelta(days=settings.WEBHOOKS_DEAD_LETTER_RETENTION_DAYS)
    purged = Purged()
    purged.deliveries = _deliveries_delete(
        selectors.deliveries_expired(before=kept_since), batch_size=batch_size, stop_at=stop_at
    )
    purged.dead_letters = _deliveries_delete(
        selectors.dead_letters_expired(before=dead_kept_since), batch_size=batch_size, stop_at=stop_at
    )
    purged.events = _events_delete(before=kept_since, batch_size=batch_size, stop_at=stop_at)
    metrics.RETENTION_DELETED.labels(table="deliveries").inc(purged.deliveries + purged.dead_letters)
    metrics.RETENTION_DELETED.labels(table="events").inc(purged.events)
    if purged.deliveries or purged.dead_letters or purged.events:
        logger.info(
            "retention: deleted %d deliveries, %d dead letters and %d events",
            purged.deliveries,
            purged.dead_letters,
            purged.events,
        )
    return purged


def _deliveries_delete(expired, *, batch_size: int, stop_at: float) -> int:
    deleted = 0
    while time.monotonic() < stop_at:
        with transaction.atomic():
            ids = list(expired.select_for_update(skip_locked=True).values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            # Their attempts and replay records go with them (one DELETE each).
            _, by_model = Delivery.objects.filter(id__in=ids).only("id").delete()
            deleted += by_model.get(Delivery._meta.label, 0)
    return deleted


def _events_delete(*, before: datetime, batch_size: int, stop_at: float) -> int:
    """Per workspace, pages of its old events (by the index on workspace and time), of which
    those no delivery references are deleted: what a dead letter or a pending delivery needs
    stays, and is looked at once per run."""
    deleted = 0
    for workspace_id in Workspace.objects.order_by("id").values_list("id", flat=True):
        after = None
        while True:
            if time.monotonic() >= stop_at:
                return deleted
            page = list(
                selectors.events_older(workspace_id=workspace_id, before=before, after=after).values_list(
                    "created_at", "id"
                )[:batch_size]
            )
            if not page:
                break
            after = page[-1]
            with transaction.atomic():
                unneeded = selectors.events_unneeded(
                    workspace_id=workspace_id, before=before, ids=[event_id for _, event_id in page]
                )
                _, by_model = unneeded.only("id").delete()
                deleted += by_model.get("deliveries.Event", 0)
            if len(page) < batch_size:
                break
    return deleted
