"""Publishing events and delivering them: every write of the delivery pipeline."""

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

import clientflow_webhooks
from clientflow_webhooks.celery import app as celery_app
from clientflow_webhooks.models import Workspace
from endpoints import event_types as catalogue
from endpoints.addresses import allowed_private_networks
from endpoints.models import Endpoint
from endpoints.selectors import endpoints_subscribed

from . import policy, selectors, transport
from .models import Delivery, DeliveryAttempt, DeliveryReplay, Event
from .signing import signature_header

logger = logging.getLogger(__name__)

DELIVER_TASK = "deliveries.tasks.deliver"
USER_AGENT = f"ClientFlow-Webhooks/{clientflow_webhooks.__version__}"


def _encode_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _has_nul(value: Any) -> bool:
    """PostgreSQL's jsonb cannot store U+0000 in a string."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_create(*, workspace: Workspace, event_type: str, data: dict[str, Any]) -> Event:
    if not isinstance(data, dict):
        raise ValidationError({"data": ["Event data must be a JSON object."]})
    try:
        encoded_data = _encode_json(data)
        encoded_data.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise ValidationError({"data": [f"Event data is not JSON-serialisable: {exc}"]}) from None
    if _has_nul(data):
        raise ValidationError({"data": ["Event data must not contain the NUL character (\\u0000)."]})
    # Milliseconds, so that the stored time and the one in the body are the same.
    now = timezone.now()
    created_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    event = Event(workspace=workspace, type=event_type, data=json.loads(encoded_data), created_at=created_at)
    # Built by hand so that `data` keeps the caller's key order in the signed bytes.
    event.payload = (
        f'{{"id":{_encode_json(event.id)},"type":{_encode_json(event_type)},'
        f'"created_at":{_encode_json(_iso_utc(created_at))},"workspace":{_encode_json(workspace.slug)},'
        f'"data":{encoded_data}}}'
    )
    size = len(event.payload.encode("utf-8"))
    if size > settings.WEBHOOKS_MAX_PAYLOAD_BYTES:
        raise ValidationError(
            {
                "data": [
                    f"The event body would be {size} bytes; at most {settings.WEBHOOKS_MAX_PAYLOAD_BYTES} are allowed."
                ]
            }
        )
    event.save(force_insert=True)
    return event


@transaction.atomic
def event_publish(*, workspace: Workspace, event_type: str, data: dict[str, Any]) -> Event:
    """Record the event and one pending delivery per enabled endpoint subscribed to it.

    Runs in the caller's transaction when there is one: deliveries are enqueued only
    after it commits, so a rolled-back caller sends nothing.
    """
    if event_type not in catalogue.SUBSCRIBABLE_NAMES:
        if event_type == catalogue.TEST_EVENT.name:
            message = f"{event_type} is sent only by Send Test Event."
        else:
            message = f"Unknown event type: {event_type}."
        raise ValidationError({"event_type": [message]})
    event = _event_create(workspace=workspace, event_type=event_type, data=data)
    endpoint_ids = list(endpoints_subscribed(workspace=workspace, event_type=event_type).values_list("id", flat=True))
    deliveries = Delivery.objects.bulk_create(
        Delivery(event=event, endpoint_id=endpoint_id, next_attempt_at=event.created_at) for endpoint_id in endpoint_ids
    )
    delivery_ids = [str(d.id) for d in deliveries]
    transaction.on_commit(lambda: deliveries_enqueue(delivery_ids=delivery_ids), robust=True)
    logger.info("event %s %s published to %d endpoints", event.id, event_type, len(delivery_ids))
    return event


@transaction.atomic
def send_test_event(*, endpoint: Endpoint) -> Delivery:
    """Send a synthetic ``webhook.test`` event to `endpoint` alone, enabled or not."""
    event = _event_create(
        workspace=endpoint.workspace,
        event_type=catalogue.TEST_EVENT.name,
        data={"message": "This is a test event from ClientFlow.", "endpoint_id": endpoint.id},
    )
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=event.created_at)
    transaction.on_commit(lambda: deliveries_enqueue(delivery_ids=[str(delivery.id)]), robust=True)
    return delivery


def deliveries_enqueue(*, delivery_ids: Sequence[str], countdown: float = 0, per_message: int = 1) -> None:
    """Send the deliveries to the workers over one broker connection, `per_message` ids in
    each message (one by default, so that a slow endpoint holds up no other).

    Never raises: a message that cannot be sent (broker down) only delays its delivery,
    because the sweeper re-enqueues what is due from the database.
    """
    if not delivery_ids:
        return
    try:
        with celery_app.producer_or_acquire() as producer:
            for start in range(0, len(delivery_ids), per_message):
                chunk = list(delivery_ids[start : start + per_message])
                celery_app.send_task(DELIVER_TASK, args=[chunk], countdown=countdown or None, producer=producer)
    except Exception:
        logger.exception("could not enqueue %d deliveries; the sweeper will send them", len(delivery_ids))


def deliveries_sweep() -> int:
    """Re-enqueue due deliveries whose message went missing or whose worker was lost."""
    now = timezone.now()
    overdue = selectors.deliveries_overdue(
        now=now, grace=timedelta(seconds=settings.WEBHOOKS_SWEEP_GRACE), limit=settings.WEBHOOKS_SWEEP_BATCH
    )
    # Marked due "now", so that the next sweeps leave them alone for another grace period
    # instead of piling more messages on a queue that is only slow.
    swept = Delivery.objects.filter(id__in=overdue, status=Delivery.Status.PENDING).update(next_attempt_at=now)
    if swept:
        logger.warning("sweeper re-enqueues %d overdue deliveries", swept)
        deliveries_enqueue(delivery_ids=[str(i) for i in overdue])
    return swept


def _delivery_claim(*, delivery_id: str, now: datetime) -> datetime | None:
    """Take the lease on a due delivery and reserve the next attempt number.

    Returns the lease's expiry, which also identifies this claim, or None when the
    delivery is not due or another worker holds it.
    """
    lease = now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS)
    claimed = (
        Delivery.objects.filter(id=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(locked_until=lease, attempt_count=F("attempt_count") + 1)
    )
    return lease if claimed == 1 else None


def _delivery_end(*, delivery: Delivery, status: str, error: str, attempted: bool) -> None:
    update: dict[str, Any] = {}
    if not attempted:
        update["attempt_count"] = F("attempt_count") - 1  # the number reserved was not used
    Delivery.objects.filter(id=delivery.id).update(
        status=status,
        last_error=error,
        completed_at=timezone.now(),
        next_attempt_at=None,
        locked_until=None,
        **update,
    )
    logger.info("delivery %s %s: %s", delivery.id, status, error)


def request_headers(*, delivery: Delivery, body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-ClientFlow-Event": delivery.event.type,
        "X-ClientFlow-Delivery": str(delivery.id),
        "X-ClientFlow-Signature": signature_header(secret=secret, body=body),
    }


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    """The request headers as kept for history: the signature cut short, so that nobody
    who can read attempts (members, support, a dump) holds a request they could replay."""
    kept = dict(headers)
    if signature := kept.get("X-ClientFlow-Signature"):
        kept["X-ClientFlow-Signature"] = f"{signature[:15]}…"
    return kept


def max_attempts() -> int:
    return 1 + len(settings.WEBHOOKS_RETRY_DELAYS)


def delivery_attempt(*, delivery_id: str) -> DeliveryAttempt | None:
    """Make the next attempt of a delivery if it is due and nobody else is making it.

    Records the attempt and moves the delivery on: succeeded, failed (permanent 4xx),
    scheduled for a retry, or exhausted. Returns the attempt, or None if none was made.
    Call it outside any transaction: the lease must be visible to other workers at once.
    """
    now = timezone.now()
    lease = _delivery_claim(delivery_id=delivery_id, now=now)
    if lease is None:
        logger.debug("delivery %s not due or already claimed", delivery_id)
        return None
    delivery = Delivery.objects.select_related("event", "endpoint").get(id=delivery_id)
    endpoint = delivery.endpoint
    if endpoint is None:
        _delivery_end(
            delivery=delivery, status=Delivery.Status.CANCELLED, error="The endpoint was deleted.", attempted=False
        )
        return None
    if not endpoint.enabled and delivery.event.type != catalogue.TEST_EVENT.name:
        _delivery_end(
            delivery=delivery, status=Delivery.Status.CANCELLED, error="The endpoint is disabled.", attempted=False
        )
        return None
    number = delivery.attempt_count
    in_schedule = number - delivery.attempts_before_replay  # this attempt's place in the schedule
    if in_schedule > max_attempts():
        # Numbers were reserved by attempts whose worker died before recording them.
        _delivery_end(
            delivery=delivery,
            status=Delivery.Status.EXHAUSTED,
            error=delivery.last_error or "Attempts were interrupted before they could be recorded.",
            attempted=False,
        )
        return None

    body = delivery.event.payload.encode("utf-8")
    result = transport.post(
        url=endpoint.url,
        body=body,
        headers=request_headers(delivery=delivery, body=body, secret=endpoint.secret),
        timeout=settings.WEBHOOKS_TIMEOUT,
        ca_file=settings.WEBHOOKS_CA_BUNDLE,
        body_limit=settings.WEBHOOKS_RESPONSE_BODY_LIMIT,
        allowed_private=allowed_private_networks(),
    )
    outcome = policy.Outcome.PERMANENT if result.blocked else policy.classify(status_code=result.status_code)
    error = result.error or ("" if outcome == policy.Outcome.SUCCESS else f"HTTP {result.status_code}")
    ended_at = timezone.now()
    update: dict[str, Any] = {"last_status_code": result.status_code, "last_error": error, "locked_until": None}
    delay = None
    if outcome == policy.Outcome.SUCCESS:
        update.update(status=Delivery.Status.SUCCEEDED, completed_at=ended_at, next_attempt_at=None)
    elif outcome == policy.Outcome.PERMANENT:
        update.update(status=Delivery.Status.FAILED, completed_at=ended_at, next_attempt_at=None)
    else:
        delay = policy.retry_delay(failed_attempts=in_schedule, delays=settings.WEBHOOKS_RETRY_DELAYS)
        if delay is None:
            update.update(status=Delivery.Status.EXHAUSTED, completed_at=ended_at, next_attempt_at=None)
        else:
            update.update(next_attempt_at=ended_at + timedelta(seconds=delay))

    with transaction.atomic():
        attempt = DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=result.started_at,
            duration_ms=result.duration_ms,
            request_headers=_redacted(result.request_headers),
            response_status=result.status_code,
            response_headers=result.response_headers,
            response_body=result.response_body,
            error=result.error,
            outcome=outcome,
        )
        # Only while our lease holds: if it ran out and another worker claimed the
        # delivery, that worker decides what happens next.
        kept = Delivery.objects.filter(id=delivery.id, locked_until=lease).update(**update)
        if kept and delay is not None:
            transaction.on_commit(lambda: deliveries_enqueue(delivery_ids=[delivery_id], countdown=delay), robust=True)
    if not kept:
        logger.warning("delivery %s attempt %d finished after its lease ran out", delivery.id, number)
    logger.info(
        "delivery %s attempt %d to endpoint %s: %s (%s) in %d ms, %s",
        delivery.id,
        number,
        endpoint.id,
        outcome,
        error or result.status_code,
        result.duration_ms,
        f"retry in {delay:g}s" if delay is not None else update["status"],
    )
    return attempt


@dataclass
class ReplayResult:
    replayed: list[Delivery] = field(default_factory=list)
    # Why each refused delivery was refused: reason -> deliveries.
    refused: dict[str, list[Delivery]] = field(default_factory=dict)


REFUSED_NOT_DEAD = "it is not a dead letter"
REFUSED_DELETED = "its endpoint was deleted"
REFUSED_DISABLED = "its endpoint is disabled"


REPLAY_CHUNK = 1000
REPLAY_MESSAGE_SIZE = 50


def delivery_replay(
    *, deliveries: Iterable[Delivery] | QuerySet[Delivery], actor: AbstractBaseUser | None
) -> ReplayResult:
    """Send dead letters again: the same event bytes, to the endpoint's current URL with its
    current secret, on a fresh retry schedule. A delivery keeps its id and earlier attempts;
    the new ones follow. Deliveries whose endpoint is deleted or disabled are refused, and
    so is anything that is (no longer) a dead letter.

    Works in chunks, each deciding on rows it has locked, so that two people replaying the
    same delivery at once replay it once, and a large outage makes no huge transaction."""
    if isinstance(deliveries, QuerySet):
        ids = list(deliveries.values_list("id", flat=True))
    else:
        ids = [d.id for d in deliveries]
    result = ReplayResult()
    batch = uuid.uuid4()
    for start in range(0, len(ids), REPLAY_CHUNK):
        _replay_chunk(ids=ids[start : start + REPLAY_CHUNK], actor=actor, batch=batch, result=result)
    if result.replayed:
        logger.info("replay %s by %s: %d deliveries", batch, actor, len(result.replayed))
    return result


@transaction.atomic
def _replay_chunk(
    *, ids: list[uuid.UUID], actor: AbstractBaseUser | None, batch: uuid.UUID, result: ReplayResult
) -> None:
    rows = Delivery.objects.select_for_update(of=("self",)).select_related("endpoint").filter(id__in=ids)
    replayed = []
    for delivery in rows:
        if delivery.status not in Delivery.DEAD_LETTER_STATUSES:
            reason = REFUSED_NOT_DEAD
        elif delivery.endpoint_id is None:
            reason = REFUSED_DELETED
        elif not delivery.endpoint.enabled:
            reason = REFUSED_DISABLED
        else:
            replayed.append(delivery)
            continue
        result.refused.setdefault(reason, []).append(delivery)
    if not replayed:
        return
    replayed_ids = [d.id for d in replayed]
    Delivery.objects.filter(id__in=replayed_ids).update(
        status=Delivery.Status.PENDING,
        attempts_before_replay=F("attempt_count"),
        next_attempt_at=timezone.now(),
        locked_until=None,
        completed_at=None,
    )
    DeliveryReplay.objects.bulk_create(DeliveryReplay(delivery_id=i, actor=actor, batch=batch) for i in replayed_ids)
    result.replayed.extend(replayed)
    delivery_ids = [str(i) for i in replayed_ids]
    transaction.on_commit(
        lambda: deliveries_enqueue(delivery_ids=delivery_ids, per_message=REPLAY_MESSAGE_SIZE), robust=True
    )
