"""Publishing events and delivering them: every write of the delivery pipeline."""

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, F, QuerySet, Value, When
from django.db.models.functions import Cast
from django.utils import timezone

import clientflow_webhooks
from clientflow_webhooks.cache import RedisCache
from clientflow_webhooks.celery import app as celery_app
from clientflow_webhooks.db import prepared_cursor
from clientflow_webhooks.logs import delivery_context
from clientflow_webhooks.models import Workspace
from endpoints import event_types as catalogue
from endpoints.addresses import allowed_private_networks
from endpoints.models import Endpoint
from endpoints.selectors import endpoint_ids_subscribed

from . import metrics, notices, policy, selectors, transport
from .models import Delivery, DeliveryAttempt, DeliveryReplay, Event
from .signing import SigningSecrets, redacted

logger = logging.getLogger(__name__)

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


def _event_build(*, workspace: Workspace, event_type: str, data: dict[str, Any]) -> Event:
    """The event with its exact body, validated, not saved yet."""
    if not isinstance(data, dict):
        raise ValidationError({"data": ["Event data must be a JSON object."]})
    try:
        encoded_data = _encode_json(data)
        encoded_data.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise ValidationError({"data": [f"Event data is not JSON-serialisable: {exc}"]}) from None
    if _has_nul(data):
        raise ValidationError({"data": ["Event data must not contain the NUL character (\\u0000)."]})
    parsed = json.loads(encoded_data)  # what the receiver gets: tuples are arrays, keys are strings
    if settings.WEBHOOKS_VALIDATE_EVENT_DATA and (
        problems := catalogue.data_errors(event_type=event_type, data=parsed)
    ):
        raise ValidationError({"data": problems})
    # Milliseconds, so that the stored time and the one in the body are the same.
    now = timezone.now()
    created_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    event = Event(workspace=workspace, type=event_type, data=parsed, created_at=created_at)
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
    return event


def event_publish(*, workspace: Workspace, event_type: str, data: dict[str, Any]) -> Event:
    """Record the event and one pending delivery per enabled endpoint subscribed to it.

    Runs in the caller's transaction when there is one: deliveries are enqueued only
    after it commits, so a rolled-back caller sends nothing.
    """
    (event,) = events_publish(workspace=workspace, event_type=event_type, data_list=[data])
    return event


@transaction.atomic
def events_publish(*, workspace: Workspace, event_type: str, data_list: Sequence[dict[str, Any]]) -> list[Event]:
    """Publish several events of one type at once (a bulk change in ClientFlow): the same
    as `event_publish` for each, in a constant number of queries."""
    if event_type not in catalogue.SUBSCRIBABLE_NAMES:
        if event_type == catalogue.TEST_EVENT.name:
            message = f"{event_type} is sent only by Send Test Event."
        else:
            message = f"Unknown event type: {event_type}."
        raise ValidationError({"event_type": [message]})
    events = [_event_build(workspace=workspace, event_type=event_type, data=data) for data in data_list]
    endpoint_ids = endpoint_ids_subscribed(workspace=workspace, event_type=event_type)
    if connection.vendor == "postgresql" and len(events) * len(endpoint_ids) < COPY_THRESHOLD:
        _events_insert_sql(workspace=workspace, event_type=event_type, events=events, endpoint_ids=endpoint_ids)
    else:
        Event.objects.bulk_create(events)
        _deliveries_insert(events=events, endpoint_ids=endpoint_ids)
    if endpoint_ids:
        transaction.on_commit(lambda: endpoints_wake(endpoint_ids=endpoint_ids), robust=True)
    for event in events:
        logger.info("event %s %s published to %d endpoints", event.id, event_type, len(endpoint_ids))
    return events


# Above this many rows PostgreSQL's COPY writes them: 10,000 deliveries take about a
# tenth of what bulk_create's compiled INSERT does (docs/performance.md).
COPY_THRESHOLD = 1000


# PostgreSQL: the events and their deliveries in one statement, for the usual publish.
_PUBLISH_TEMPLATE = """
WITH events AS (
    INSERT INTO {event} (id, workspace_id, type, data, payload, created_at)
    SELECT e.id, %(workspace)s, %(type)s, e.data, e.payload, e.created_at
    FROM jsonb_to_recordset(%(events)s) AS e(id text, data jsonb, payload text, created_at timestamptz)
    RETURNING id, created_at
)
INSERT INTO {delivery} (id, event_id, endpoint_id, status, attempt_count, attempts_before_replay,
                        next_attempt_at, last_error, created_at)
SELECT gen_random_uuid(), ev.id, en.id, %(pending)s, 0, 0, ev.created_at, '', %(now)s
FROM events ev CROSS JOIN unnest(%(endpoints)s::bigint[]) AS en(id)
"""
_PUBLISH_SQL = _PUBLISH_TEMPLATE.format(event=Event._meta.db_table, delivery=Delivery._meta.db_table)


def _events_insert_sql(
    *, workspace: Workspace, event_type: str, events: Sequence[Event], endpoint_ids: Sequence[int]
) -> None:
    rows = [{"id": e.id, "data": e.data, "payload": e.payload, "created_at": e.created_at.isoformat()} for e in events]
    with prepared_cursor() as cursor:
        cursor.execute(
            _PUBLISH_SQL,
            {
                "workspace": workspace.id,
                "type": event_type,
                "events": _encode_json(rows),
                "pending": Delivery.Status.PENDING,
                "now": timezone.now(),
                "endpoints": list(endpoint_ids),
            },
        )
    for event in events:  # as saved by the ORM
        event._state.adding = False
        event._state.db = connection.alias


def _deliveries_insert(*, events: Sequence[Event], endpoint_ids: Sequence[int]) -> None:
    """One pending delivery per event and endpoint, in one statement."""
    count = len(events) * len(endpoint_ids)
    if count < COPY_THRESHOLD or connection.vendor != "postgresql":
        Delivery.objects.bulk_create(
            Delivery(event=event, endpoint_id=endpoint_id, next_attempt_at=event.created_at)
            for event in events
            for endpoint_id in endpoint_ids
        )
        return
    now = timezone.now()
    columns = ("id", "event_id", "endpoint_id", "status", "attempt_count", "attempts_before_replay")
    columns += ("next_attempt_at", "last_error", "created_at")
    with connection.cursor() as cursor, cursor.connection.cursor() as raw:
        statement = f"COPY {Delivery._meta.db_table} ({', '.join(columns)}) FROM STDIN"
        with raw.copy(statement) as copy:
            for event in events:
                for endpoint_id in endpoint_ids:
                    copy.write_row(
                        (uuid.uuid4(), event.id, endpoint_id, Delivery.Status.PENDING, 0, 0, event.created_at, "", now)
                    )


@transaction.atomic
def send_test_event(*, endpoint: Endpoint) -> Delivery:
    """Send a synthetic ``webhook.test`` event to `endpoint` alone, enabled or not."""
    event = _event_build(
        workspace=endpoint.workspace,
        event_type=catalogue.TEST_EVENT.name,
        data={**catalogue.TEST_EVENT.example, "endpoint_id": endpoint.id},
    )
    event.save(force_insert=True)
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=event.created_at)
    transaction.on_commit(lambda: endpoints_wake(endpoint_ids=[endpoint.id]), robust=True)
    return delivery


# --- waking workers ---------------------------------------------------------------
# A message names an endpoint, not a delivery: "this endpoint has due deliveries". The
# worker that takes it drains the endpoint (`endpoint_drain`), so one message carries as
# many deliveries as are due, and at most one wake-up per endpoint waits in the queue.

DRAIN_TASK = "deliveries.tasks.drain_endpoint"
WAKE_TASK = "deliveries.tasks.wake_endpoints"
# How long the mark "a wake-up for this endpoint is queued" stands; if its message is
# lost, the sweeper wakes the endpoint anyway.
WAKE_MARK_SECONDS = 5


def _mark(kind: str, endpoint_id: int, detail: str = "") -> str:
    """A mark's key: per database, since endpoint ids are (deployments may share a Redis)."""
    return f"{connection.settings_dict['NAME']}:{kind}:{endpoint_id}{detail}"


def _wake_mark(endpoint_id: int, at: datetime | None) -> str:
    """Set while a wake-up for the endpoint (now, or at `at`) waits in the queue."""
    return _mark("wake", endpoint_id, f":{at.timestamp()}" if at else "")


def endpoints_wake(*, endpoint_ids: Sequence[int], at: datetime | None = None) -> None:
    """Ask the workers to drain these endpoints now, or at `at`. An endpoint whose
    wake-up for the same moment is already queued gets no second one.

    Never raises: a message that cannot be sent (broker down) only delays deliveries,
    because the sweeper wakes every endpoint with overdue deliveries.
    """
    if len(endpoint_ids) > settings.WEBHOOKS_FANOUT_CHUNK:
        # A large fan-out: the workers send the wake-ups, so the publisher returns at once.
        chunks = [
            list(endpoint_ids[i : i + settings.WEBHOOKS_FANOUT_CHUNK])
            for i in range(0, len(endpoint_ids), settings.WEBHOOKS_FANOUT_CHUNK)
        ]
        _send(WAKE_TASK, [([chunk], {"at": at.isoformat() if at else None}) for chunk in chunks], at)
        return
    if at is None and (rung := _wake_or_ring(endpoint_ids)) is not None:
        woken = rung
    else:
        countdown = None
        if at is not None:
            countdown = max(0.0, (at - timezone.now()).total_seconds())
        timeout = WAKE_MARK_SECONDS + (countdown or 0)
        woken = [i for i in endpoint_ids if _marks("add", _wake_mark(i, at), 1, timeout, fallback=True)]
    if not _send(DRAIN_TASK, [([i], {}) for i in woken], at):
        for i in woken:
            _marks("delete", _wake_mark(i, at), fallback=False)


# --- the doorbell -----------------------------------------------------------------
# A drain that has just emptied a busy endpoint may wait a moment for its next publish
# (`_Doorbell`). It holds the endpoint's wake-up mark meanwhile, so a publish finds the
# mark and rings the endpoint's bell (a one-item Redis list) instead of sending a
# message: the waiting drain claims the new delivery at once, without a message or a
# slot. Redis mark store only.

_RING = """
local woken = {}
for i = 1, #KEYS, 2 do
  if redis.call('SET', KEYS[i], 1, 'NX', 'EX', ARGV[1]) then
    woken[#woken + 1] = (i + 1) / 2
  else
    redis.call('LPUSH', KEYS[i + 1], 1)
    redis.call('LTRIM', KEYS[i + 1], 0, 0)
    redis.call('EXPIRE', KEYS[i + 1], ARGV[1])
  end
end
return woken
"""


def _bell(endpoint_id: int) -> str:
    return _mark("bell", endpoint_id)


def _redis() -> tuple[RedisCache, Any] | None:
    """The mark store and its Redis client, or None when it is not Redis."""
    cache = caches["deliveries"]
    return (cache, cache.redis_client()) if isinstance(cache, RedisCache) else None


def _wake_or_ring(endpoint_ids: Sequence[int]) -> list[int] | None:
    """Set the wake-up mark of each endpoint that has none and return those (they need a
    message); ring the bell of the others, in one round trip. None: no Redis, or it failed."""
    store = _redis()
    if store is None:
        return None
    cache, client = store
    keys = []
    for i in endpoint_ids:
        keys += [cache.make_key(_wake_mark(i, None)), cache.make_key(_bell(i))]
    try:
        positions = client.eval(_RING, len(keys), *keys, WAKE_MARK_SECONDS)
    except Exception:
        logger.warning("mark store unavailable: wake %s", list(endpoint_ids), exc_info=True)
        return None
    return [endpoint_ids[p - 1] for p in positions]


# Threads of this process waiting at a doorbell, and when each endpoint was last drained
# here: only an endpoint with steady traffic is worth waiting for.
_lingering = threading.BoundedSemaphore(max(1, settings.WEBHOOKS_LINGER_THREADS))
_drained_at: dict[int, float] = {}
RECENT_SECONDS = 1.0


class _Doorbell:
    def __init__(self, *, endpoint_id: int) -> None:
        self.endpoint_id = endpoint_id
        last = _drained_at.get(endpoint_id)
        self.store = _redis() if last is not None and time.monotonic() - last < RECENT_SECONDS else None
        self.holding = False

    def wait(self, *, until: float) -> bool:
        """Wait for a publish to the endpoint until `until` (monotonic), at most
        WEBHOOKS_LINGER_SECONDS. Returns whether one rang."""
        seconds = min(settings.WEBHOOKS_LINGER_SECONDS, until - time.monotonic())
        if self.store is None or seconds < 0.005 or settings.WEBHOOKS_LINGER_THREADS < 1:
            return False
        if not _lingering.acquire(blocking=False):
            return False
        cache, client = self.store
        mark = cache.make_key(_wake_mark(self.endpoint_id, None))
        try:
            # The mark lasts WAKE_MARK_SECONDS, renewed before each wait: one left by a lost
            # worker or a lost reply swallows publishes and the sweeper's wake-ups for no
            # longer than any other mark, less than the sweeper's grace.
            if self.holding:
                client.set(mark, 1, ex=WAKE_MARK_SECONDS)
            else:
                # A queued wake-up already holds the mark: its drain takes over.
                self.holding = bool(client.set(mark, 1, nx=True, ex=WAKE_MARK_SECONDS))
                if not self.holding:
                    return False
            return client.blpop([cache.make_key(_bell(self.endpoint_id))], timeout=seconds) is not None
        except Exception:
            logger.warning("mark store unavailable: doorbell of endpoint %s", self.endpoint_id, exc_info=True)
            self.store = None
            return False
        finally:
            _lingering.release()

    def close(self) -> None:
        """Let go of the mark: publishes send messages again."""
        if len(_drained_at) > 100_000:
            _drained_at.clear()
        _drained_at[self.endpoint_id] = time.monotonic()
        if self.holding:
            _marks("delete", _wake_mark(self.endpoint_id, None), fallback=False)
            self.holding = False


# The marks are hints that save messages and threads; the database decides. When their
# store fails, a mark counts as absent: more messages, never fewer deliveries.


def _marks(operation: str, key: str, *args: Any, fallback: Any) -> Any:
    """`caches["deliveries"].<operation>(key, *args)`, or `fallback` when the store fails."""
    try:
        return getattr(caches["deliveries"], operation)(key, *args)
    except Exception:
        logger.warning("mark store unavailable: %s %s", operation, key, exc_info=True)
        return fallback


def _send(task: str, calls: list[tuple[list[Any], dict[str, Any]]], at: datetime | None) -> bool:
    if not calls:
        return True
    try:
        with celery_app.producer_or_acquire() as producer:
            for args, kwargs in calls:
                celery_app.send_task(task, args=args, kwargs=kwargs, eta=at, producer=producer)
    except Exception:
        logger.exception("could not send %d %s messages; the sweeper will catch up", len(calls), task)
        return False
    return True


def deliveries_sweep() -> int:
    """Wake the endpoints of deliveries that have been due for longer than the grace
    period with nobody working on them: their message was lost or their worker died.
    Returns how many endpoints were woken."""
    overdue = selectors.endpoints_overdue(now=timezone.now(), grace=timedelta(seconds=settings.WEBHOOKS_SWEEP_GRACE))
    endpoint_ids = list(overdue[: settings.WEBHOOKS_SWEEP_BATCH])
    if endpoint_ids:
        logger.warning("sweeper wakes %d endpoints with overdue deliveries", len(endpoint_ids))
        # A wake-up mark outlives its message by at most WAKE_MARK_SECONDS, less than the
        # grace: an endpoint whose wake-up was lost gets a new one, and one whose wake-up
        # is only waiting in a busy queue gets no second one.
        endpoints_wake(endpoint_ids=endpoint_ids)
    return len(endpoint_ids)


# --- delivering ---------------------------------------------------------------------


DISABLED = "The endpoint is disabled."
# How long an endpoint that answered keeps its full concurrency without answering again.
ANSWERING_MARK_SECONDS = 300
ADVISORY_LOCK_SLOTS = 256  # endpoint id * 256 + slot: the advisory lock key of a slot


def _answering_mark(endpoint_id: int) -> str:
    """Set while the endpoint answers: slow start gives it more than one slot."""
    return _mark("answering", endpoint_id)


def _slot_take(*, endpoint_id: int, slots: int) -> int | None:
    """Take one of the endpoint's slots if one is free; returns its key.

    PostgreSQL session advisory locks: free again when this connection ends, so a lost
    worker holds nothing. Other databases (SQLite in development) have no bound (-1).
    """
    if connection.vendor != "postgresql":
        return -1
    first = endpoint_id * ADVISORY_LOCK_SLOTS
    with prepared_cursor() as cursor:
        # Stops at the first slot it gets: the executor pulls one row at a time.
        cursor.execute(
            "SELECT k FROM generate_series(%s::bigint, %s::bigint) AS k WHERE pg_try_advisory_lock(k) LIMIT 1",
            [first, first + min(slots, ADVISORY_LOCK_SLOTS) - 1],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _slot_release(*, key: int) -> None:
    if key < 0:
        return
    try:
        with prepared_cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    except DatabaseError:
        logger.warning("could not release slot %s: the connection is gone, and the lock with it", key)


@dataclass
class _Drained:
    made: int = 0
    # Whether every attempt got an HTTP answer (None: no attempt was made).
    answered: bool | None = None


def _drain_begins(*, endpoint_id: int) -> bool:
    """Take down the endpoint's wake-up mark, so that publishes from now on wake it again,
    and tell whether it answers lately (slow start): one round trip with Redis."""
    wake, answering = _wake_mark(endpoint_id, None), _answering_mark(endpoint_id)
    store = _redis()
    if store is None:
        _marks("delete", wake, fallback=False)
        return _marks("get", answering, fallback=None) is not None
    cache, client = store
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.delete(cache.make_key(wake))
            pipe.get(cache.make_key(answering))
            return pipe.execute()[1] is not None
    except Exception:
        logger.warning("mark store unavailable: drain of endpoint %s", endpoint_id, exc_info=True)
        return False


def endpoint_drain(*, endpoint_id: int) -> int:
    """Make the due attempts of one endpoint, in batches, for at most
    WEBHOOKS_DRAIN_SECONDS (plus the attempt under way), then wake the endpoint again for
    its next due delivery, now or later. Returns the number of attempts made.

    At most WEBHOOKS_ENDPOINT_CONCURRENCY workers drain one endpoint at once, and one
    while it does not answer (slow start), so that an endpoint that hangs holds one
    worker thread. Call it outside any transaction: leases must be visible to other
    workers at once.
    """
    answering = _drain_begins(endpoint_id=endpoint_id)
    key = _slot_take(endpoint_id=endpoint_id, slots=settings.WEBHOOKS_ENDPOINT_CONCURRENCY if answering else 1)
    if key is None:
        # Every slot is busy. Whoever holds one reads what is due after releasing it.
        logger.debug("endpoint %s: every slot is busy", endpoint_id)
        return 0
    drained = _Drained()
    doorbell = _Doorbell(endpoint_id=endpoint_id)
    try:
        drained = _drain(endpoint_id=endpoint_id, doorbell=doorbell)
    finally:
        # Before the read of what is due: a publish that found the mark held rang the
        # bell and sent no message, so the read must come after it.
        doorbell.close()
        _slot_release(key=key)
        # After the release, so that a wake-up turned away meanwhile is not lost; and
        # whatever the drain did, so that each drain hands the endpoint on to the next.
        following = selectors.endpoint_next_due(endpoint_id=endpoint_id, now=timezone.now())
        if following is not None:
            endpoints_wake(endpoint_ids=[endpoint_id], at=None if following <= timezone.now() else following)
    if drained.answered is False and answering:
        _marks("delete", _answering_mark(endpoint_id), fallback=False)
    elif drained.answered and not answering:
        _marks("set", _answering_mark(endpoint_id), 1, ANSWERING_MARK_SECONDS, fallback=None)
    return drained.made


def deliveries_cancel(*, endpoint: Endpoint, reason: str, keep_test_events: bool = False) -> int:
    """End the endpoint's pending deliveries as cancelled (it is being deleted, or it is
    disabled: then Send Test Event still reaches it). Returns how many."""
    pending = Delivery.objects.filter(endpoint=endpoint, status=Delivery.Status.PENDING)
    if keep_test_events:
        pending = pending.exclude(event__type=catalogue.TEST_EVENT.name)
    cancelled = pending.update(
        status=Delivery.Status.CANCELLED,
        last_error=reason,
        completed_at=timezone.now(),
        next_attempt_at=None,
        locked_until=None,
    )
    if cancelled:
        metrics.deliveries_ended(status=Delivery.Status.CANCELLED, count=cancelled)
        logger.info(
            "endpoint %s: %d pending deliveries cancelled: %s",
            endpoint.id,
            cancelled,
            reason,
            extra={
                "endpoint_id": endpoint.id,
                "workspace_id": endpoint.workspace_id,
                "status": Delivery.Status.CANCELLED,
                "count": cancelled,
            },
        )
    return cancelled


_ENDPOINT_TEMPLATE = "SELECT {columns} FROM {endpoint} WHERE id = %s"


@functools.cache
def _endpoint_statement() -> tuple[tuple[Any, ...], str]:
    """The fields a drain's batch needs of its endpoint, and the statement reading them:
    the address, whether enabled, the secrets, and when the workspace was last told of
    dead letters (`notices.dead_letter_seen`)."""
    names = ("workspace", "url", "enabled", "dead_letter_notified_at", *SIGNING_FIELDS)
    fields = tuple(Endpoint._meta.get_field(name) for name in names)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    return fields, _ENDPOINT_TEMPLATE.format(columns=columns, endpoint=Endpoint._meta.db_table)


def _endpoint_read(*, endpoint_id: int) -> Endpoint | None:
    """The endpoint as a drain needs it. On PostgreSQL in one plain statement: every drain
    reads it, and compiling the ORM query cost more than running it."""
    fields, statement = _endpoint_statement()
    if connection.vendor != "postgresql":
        return Endpoint.objects.filter(id=endpoint_id).only(*(f.name for f in fields)).first()
    with prepared_cursor() as cursor:
        cursor.execute(statement, [endpoint_id])
        row = cursor.fetchone()
    if row is None:
        return None
    # What the ORM would do to the values: decrypt the secrets.
    values = {
        f.attname: f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
        for f, v in zip(fields, row, strict=True)
    }
    return Endpoint(id=endpoint_id, **values)


def _drain(*, endpoint_id: int, doorbell: _Doorbell) -> _Drained:
    stop_at = time.monotonic() + settings.WEBHOOKS_DRAIN_SECONDS
    drained = _Drained()
    while True:
        # Read for every batch: a drain may wait at the doorbell for most of a second, and a
        # disable, an edit, a rotation or an overlap ended early counts from the next batch.
        endpoint = _endpoint_read(endpoint_id=endpoint_id)
        if endpoint is None:
            return drained  # deleting an endpoint cancels its pending deliveries
        if not endpoint.enabled:
            deliveries_cancel(endpoint=endpoint, reason=DISABLED, keep_test_events=True)
        secrets = SigningSecrets.of(endpoint=endpoint, at=timezone.now())  # decrypted once for the batch
        lease, batch = _deliveries_claim(endpoint=endpoint)
        results: list[_Result] = []
        sent = 0
        for delivery in batch:
            # The first of a batch always goes, so that every drain makes progress.
            if sent and time.monotonic() >= stop_at:
                break
            sent += 1
            try:
                if result := _attempt(delivery=delivery, endpoint=endpoint, secrets=secrets):
                    results.append(result)
                    if retry_at := result.update["next_attempt_at"]:
                        # The batch must be recorded (and its lease let go) before the retry
                        # is due: no new attempt after that.
                        due_in = (retry_at - timezone.now()).total_seconds()
                        stop_at = min(stop_at, time.monotonic() + due_in)
            except Exception:
                # Its lease runs out and the sweeper tries it again; the others go on.
                logger.exception(
                    "delivery %s attempt crashed",
                    delivery.id,
                    extra=_log_context(delivery, attempt=delivery.attempt_count, outcome=None),
                )
        _attempts_record(results=results, lease=lease)
        drained.made += len(results)
        for result in results:
            answered = result.attempt.response_status is not None
            drained.answered = answered if drained.answered is None else drained.answered and answered
        if sent < len(batch):
            _deliveries_release(deliveries=batch[sent:], lease=lease)
            return drained
        if time.monotonic() >= stop_at:
            return drained
        # Nothing more is due: wait a moment for the next publish, if the endpoint answers.
        if len(batch) < settings.WEBHOOKS_BATCH_SIZE and not (drained.answered and doorbell.wait(until=stop_at)):
            return drained


# PostgreSQL: the claim in one statement. The ORM needs two and a transaction, and
# compiling them costs more CPU than the HTTP request they lead to (docs/performance.md).
_CLAIM_TEMPLATE = """
WITH claimed AS (
    UPDATE {delivery} SET locked_until = %(lease)s, attempt_count = attempt_count + 1
    WHERE id IN (
        SELECT id FROM {delivery}
        WHERE endpoint_id = %(endpoint)s AND status = '{pending}' AND next_attempt_at <= %(now)s
          AND (locked_until IS NULL OR locked_until < %(now)s)
        ORDER BY next_attempt_at LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, event_id, attempt_count, attempts_before_replay, last_error, next_attempt_at
)
SELECT c.id, c.event_id, c.attempt_count, c.attempts_before_replay, c.last_error, e.type, e.payload
FROM claimed c JOIN {event} e ON e.id = c.event_id
ORDER BY c.next_attempt_at
"""
_CLAIM_SQL = _CLAIM_TEMPLATE.format(
    delivery=Delivery._meta.db_table, event=Event._meta.db_table, pending=Delivery.Status.PENDING
)


def _deliveries_claim(*, endpoint: Endpoint) -> tuple[datetime, list[Delivery]]:
    """Lease a batch of the endpoint's due deliveries (`selectors.deliveries_due`) and
    reserve each one's next attempt number, in one statement on PostgreSQL. Rows another
    worker is claiming are skipped, not waited for."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS)
    if connection.vendor != "postgresql":
        return lease, _deliveries_claim_orm(endpoint=endpoint, now=now, lease=lease)
    with prepared_cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "lease": lease,
                "endpoint": endpoint.id,
                "now": now,
                "limit": settings.WEBHOOKS_BATCH_SIZE,
            },
        )
        rows = cursor.fetchall()
    batch = []
    for delivery_id, event_id, attempt_count, attempts_before_replay, last_error, event_type, payload in rows:
        delivery = Delivery(
            id=delivery_id,
            endpoint=endpoint,
            status=Delivery.Status.PENDING,
            attempt_count=attempt_count,
            attempts_before_replay=attempts_before_replay,
            last_error=last_error,
            locked_until=lease,
        )
        delivery.event = Event(id=event_id, type=event_type, payload=payload)
        batch.append(delivery)
    return lease, batch


@transaction.atomic
def _deliveries_claim_orm(*, endpoint: Endpoint, now: datetime, lease: datetime) -> list[Delivery]:
    """The same claim on other databases (SQLite in development: its transactions are
    IMMEDIATE, so the select and the update cannot interleave with another claim's)."""
    batch = list(
        selectors.deliveries_due(endpoint_id=endpoint.id, now=now)
        .select_for_update(skip_locked=True, of=("self",))
        .select_related("event")
        .defer("event__data")[: settings.WEBHOOKS_BATCH_SIZE]  # the payload holds the data, as sent
    )
    if batch:
        Delivery.objects.filter(id__in=[d.id for d in batch]).update(
            locked_until=lease, attempt_count=F("attempt_count") + 1
        )
    for delivery in batch:
        delivery.attempt_count += 1
        delivery.locked_until = lease
        delivery.endpoint = endpoint
    return batch


def _deliveries_release(*, deliveries: Sequence[Delivery], lease: datetime) -> None:
    """Give back claimed deliveries that were not attempted, and their reserved numbers."""
    Delivery.objects.filter(id__in=[d.id for d in deliveries], locked_until=lease).update(
        locked_until=None, attempt_count=F("attempt_count") - 1
    )


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
    attempts = delivery.attempt_count - (0 if attempted else 1)
    context = _log_context(delivery, attempt=attempts, outcome=status)
    logger.info("delivery %s %s: %s", delivery.id, status, error, extra=context)
    _ended(delivery=delivery, status=status, error=error)


def _log_context(delivery: Delivery, *, attempt: int | None, outcome: str | None) -> dict[str, Any]:
    """The `extra` of a log line about a claimed delivery (its endpoint and event are loaded)."""
    endpoint = delivery.endpoint
    return delivery_context(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        workspace_id=endpoint.workspace_id,
        attempt=attempt,
        outcome=outcome,
        event_id=delivery.event.id,
        event_type=delivery.event.type,
    )


def _ended(*, delivery: Delivery, status: str, error: str) -> None:
    """Where a delivery is known to end: counted, and its endpoint's first dead letters told
    to the workspace (`notices`). An ending that a lost lease keeps from being recorded is
    counted all the same: rare, and better than a second query per batch."""
    metrics.deliveries_ended(status=status)
    if status in Delivery.DEAD_LETTER_STATUSES:
        notices.dead_letter_seen(endpoint=delivery.endpoint, delivery=delivery, error=error)


# What a drain reads of its endpoint to sign: the secrets and the overlap's end.
SIGNING_FIELDS = ("secret", "previous_secret", "previous_secret_expires_at")


def request_headers(*, delivery: Delivery, body: bytes, secrets: SigningSecrets) -> dict[str, str]:
    """The headers of an attempt, signed now: webhook-id is the event's id, the same on
    every attempt and every endpoint, for receivers to deduplicate on."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-ClientFlow-Event": delivery.event.type,
        "X-ClientFlow-Delivery": str(delivery.id),
        **secrets.headers(msg_id=delivery.event.id, body=body, at=timezone.now()),
    }


def max_attempts() -> int:
    return 1 + len(settings.WEBHOOKS_RETRY_DELAYS)


@dataclass
class _Result:
    """An attempt made, before it is recorded: the attempt and what it does to its delivery."""

    attempt: DeliveryAttempt
    update: dict[str, Any]


def _attempt(*, delivery: Delivery, endpoint: Endpoint, secrets: SigningSecrets) -> _Result | None:
    """Make the attempt of a claimed delivery: succeeded, failed (permanent 4xx),
    scheduled for a retry, or exhausted. Returns None if no attempt was made."""
    if not endpoint.enabled and delivery.event.type != catalogue.TEST_EVENT.name:
        _delivery_end(delivery=delivery, status=Delivery.Status.CANCELLED, error=DISABLED, attempted=False)
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
        headers=request_headers(delivery=delivery, body=body, secrets=secrets),
        timeout=settings.WEBHOOKS_TIMEOUT,
        ca_file=settings.WEBHOOKS_CA_BUNDLE,
        body_limit=settings.WEBHOOKS_RESPONSE_BODY_LIMIT,
        allowed_private=allowed_private_networks(),
    )
    outcome = policy.Outcome.PERMANENT if result.blocked else policy.classify(status_code=result.status_code)
    error = result.error or ("" if outcome == policy.Outcome.SUCCESS else f"HTTP {result.status_code}")
    ended_at = timezone.now()
    status, next_attempt_at = Delivery.Status.PENDING, None
    delay = None
    if outcome == policy.Outcome.SUCCESS:
        status = Delivery.Status.SUCCEEDED
    elif outcome == policy.Outcome.PERMANENT:
        status = Delivery.Status.FAILED
    else:
        delay = policy.retry_delay(failed_attempts=in_schedule, delays=settings.WEBHOOKS_RETRY_DELAYS)
        if delay is None:
            status = Delivery.Status.EXHAUSTED
        else:
            # The drain wakes the endpoint again for it (`endpoint_drain`).
            next_attempt_at = ended_at + timedelta(seconds=delay)
    logger.info(
        "delivery %s attempt %d to endpoint %s: %s (%s) in %d ms, %s",
        delivery.id,
        number,
        endpoint.id,
        outcome,
        error or result.status_code,
        result.duration_ms,
        f"retry in {delay:g}s" if delay is not None else status,
        extra=_log_context(delivery, attempt=number, outcome=outcome) | {"duration_ms": result.duration_ms},
    )
    reason = policy.reason_class(status_code=result.status_code, error=result.error, blocked=result.blocked)
    metrics.attempt_observed(outcome=outcome, reason=reason, seconds=result.duration_ms / 1000)
    if next_attempt_at is None:
        _ended(delivery=delivery, status=status, error=error)
    return _Result(
        attempt=DeliveryAttempt(
            delivery=delivery,
            number=number,
            started_at=result.started_at,
            duration_ms=result.duration_ms,
            request_headers=redacted(result.request_headers),
            response_status=result.status_code,
            response_headers=result.response_headers,
            response_body=result.response_body,
            error=result.error,
            outcome=outcome,
        ),
        update={
            "status": status,
            "last_status_code": result.status_code,
            "last_error": error,
            "next_attempt_at": next_attempt_at,
        },
    )


# PostgreSQL: a batch recorded in one statement, atomic without a transaction around it.
# Every attempt is inserted; a delivery moves on only while our lease holds: if it ran
# out and another worker claimed the delivery, that worker decides what happens next.
_RECORD_TEMPLATE = """
WITH attempts AS (
    INSERT INTO {attempt} (delivery_id, number, started_at, duration_ms, request_headers, response_status,
                           response_headers, response_body, error, outcome)
    SELECT * FROM jsonb_to_recordset(%(attempts)s) AS a(
        delivery_id uuid, number integer, started_at timestamptz, duration_ms integer, request_headers jsonb,
        response_status smallint, response_headers jsonb, response_body text, error text, outcome text)
)
UPDATE {delivery} AS d
SET status = u.status, last_status_code = u.last_status_code, last_error = u.last_error,
    next_attempt_at = u.next_attempt_at, locked_until = NULL,
    completed_at = CASE WHEN u.next_attempt_at IS NULL THEN %(now)s END
FROM jsonb_to_recordset(%(updates)s) AS u(
    id uuid, status text, last_status_code integer, last_error text, next_attempt_at timestamptz)
WHERE d.id = u.id AND d.id = ANY(%(ids)s::uuid[]) AND d.locked_until = %(lease)s
"""
_RECORD_SQL = _RECORD_TEMPLATE.format(attempt=DeliveryAttempt._meta.db_table, delivery=Delivery._meta.db_table)


def _attempts_record(*, results: Sequence[_Result], lease: datetime) -> int:
    """Record a batch's attempts and move their deliveries on, in a number of queries that
    does not grow with the batch (one on PostgreSQL). An ended delivery's `completed_at` is
    when its batch was recorded.

    A worker lost before this commits sends the batch again once its lease runs out (at
    least once; receivers deduplicate on X-ClientFlow-Delivery). Returns how many
    deliveries it moved on: those whose lease still held."""
    if not results:
        return 0
    if connection.vendor == "postgresql":
        kept = _attempts_record_sql(results=results, lease=lease)
    else:
        kept = _attempts_record_orm(results=results, lease=lease)
    if kept < len(results):
        logger.warning("%d of %d attempts finished after their lease ran out", len(results) - kept, len(results))
    return kept


def _attempts_record_sql(*, results: Sequence[_Result], lease: datetime) -> int:
    with prepared_cursor() as cursor:
        cursor.execute(_RECORD_SQL, _record_parameters(results=results, lease=lease))
        return cursor.rowcount


def _record_parameters(*, results: Sequence[_Result], lease: datetime) -> dict[str, Any]:
    """`_RECORD_SQL`'s parameters for a batch (bench.explain shows its plan with them)."""
    attempts = [
        {
            "delivery_id": str(a.delivery_id),
            "number": a.number,
            "started_at": a.started_at.isoformat(),
            "duration_ms": a.duration_ms,
            "request_headers": a.request_headers,
            "response_status": a.response_status,
            "response_headers": a.response_headers,
            "response_body": a.response_body,
            "error": a.error,
            "outcome": a.outcome,
        }
        for a in (r.attempt for r in results)
    ]
    updates = [
        {
            "id": str(r.attempt.delivery_id),
            "status": r.update["status"],
            "last_status_code": r.update["last_status_code"],
            "last_error": r.update["last_error"],
            "next_attempt_at": n.isoformat() if (n := r.update["next_attempt_at"]) else None,
        }
        for r in results
    ]
    return {
        "attempts": _encode_json(attempts),
        "updates": _encode_json(updates),
        # The planner cannot see into the JSON and guesses 100 rows: without the ids as an
        # array it joins by scanning the whole table.
        "ids": [r.attempt.delivery_id for r in results],
        "now": timezone.now(),
        "lease": lease,
    }


@transaction.atomic
def _attempts_record_orm(*, results: Sequence[_Result], lease: datetime) -> int:
    """The same on other databases (SQLite in development), in one transaction."""
    DeliveryAttempt.objects.bulk_create([r.attempt for r in results])
    recorded_at = timezone.now()
    kept = 0
    # Ended deliveries, one UPDATE per kind of ending (usually one: all 2xx).
    endings: dict[tuple[Any, ...], list[Any]] = {}
    retries = {}
    for r in results:
        if r.update["next_attempt_at"] is None:
            key = (r.update["status"], r.update["last_status_code"], r.update["last_error"])
            endings.setdefault(key, []).append(r.attempt.delivery_id)
        else:
            retries[r.attempt.delivery_id] = r.update
    for (status, status_code, error), ids in endings.items():
        kept += Delivery.objects.filter(id__in=ids, locked_until=lease).update(
            status=status,
            last_status_code=status_code,
            last_error=error,
            completed_at=recorded_at,
            next_attempt_at=None,
            locked_until=None,
        )
    if retries:
        kept += Delivery.objects.filter(id__in=list(retries), locked_until=lease).update(
            locked_until=None,
            **{
                # Cast, as bulk_update does: PostgreSQL types a CASE of only NULLs as text.
                name: Cast(Case(*[When(id=i, then=Value(update[name])) for i, update in retries.items()]), field)
                for name in ("last_status_code", "last_error", "next_attempt_at")
                if (field := Delivery._meta.get_field(name))
            },
        )
    return kept


@dataclass
class ReplayResult:
    replayed: list[Delivery] = field(default_factory=list)
    # Why each refused delivery was refused: reason -> deliveries.
    refused: dict[str, list[Delivery]] = field(default_factory=dict)


REFUSED_NOT_DEAD = "it is not a dead letter"
REFUSED_DELETED = "its endpoint was deleted"
REFUSED_DISABLED = "its endpoint is disabled"


REPLAY_CHUNK = 1000


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
    endpoint_ids = sorted({d.endpoint_id for d in replayed})
    transaction.on_commit(lambda: endpoints_wake(endpoint_ids=endpoint_ids), robust=True)
