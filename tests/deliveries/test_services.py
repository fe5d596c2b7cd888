import json
import time
from datetime import timedelta

import pytest
import requests
import responses
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from deliveries import selectors, services
from deliveries.models import Delivery, DeliveryAttempt, Event
from deliveries.signing import signature_header
from endpoints.services import endpoint_disable
from tests.conftest import example

URL = "https://hooks.example.com/clientflow"


@pytest.fixture
def enqueued(monkeypatch):
    """Record the wake-ups that would be sent to the broker instead of sending them:
    (endpoint ids, when: None for now)."""
    calls: list[tuple[list[int], object]] = []

    def fake_wake(*, endpoint_ids, at=None):
        calls.append((list(endpoint_ids), at))

    monkeypatch.setattr(services, "endpoints_wake", fake_wake)
    return calls


@pytest.fixture
def sent(monkeypatch):
    """Record the messages that would go to the broker: (task, first argument)."""
    messages: list[tuple[str, object]] = []

    def fake_send(task, calls, at):
        messages.extend((task, args[0]) for args, _ in calls)
        return True

    monkeypatch.setattr(services, "_send", fake_send)
    return messages


@pytest.fixture
def other_connection():
    """A second PostgreSQL session on the test database: another worker's."""
    import psycopg

    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as other:
        yield other


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOKS_RETRY_DELAYS = [1, 2, 4]
    settings.WEBHOOKS_TIMEOUT = 5


def publish(workspace, event_type="invoice.paid", data=None):
    return services.event_publish(workspace=workspace, event_type=event_type, data=data or example(event_type))


def make_due(delivery_id):
    Delivery.objects.filter(id=delivery_id).update(next_attempt_at=timezone.now())


def drain(delivery):
    """One drain of the delivery's endpoint, as a worker runs it; returns the attempt it
    made of `delivery`, if any."""
    before = list(DeliveryAttempt.objects.filter(delivery_id=delivery.id).values_list("id", flat=True))
    services.endpoint_drain(endpoint_id=delivery.endpoint_id)
    return DeliveryAttempt.objects.filter(delivery_id=delivery.id).exclude(id__in=before).order_by("number").last()


# --- publishing -----------------------------------------------------------------


def test_publish_writes_one_pending_delivery_per_subscribed_enabled_endpoint(
    workspace, make_endpoint, enqueued, django_capture_on_commit_callbacks
):
    paid, _ = make_endpoint(url="https://a.example.com/", event_types=["invoice.paid"])
    make_endpoint(url="https://b.example.com/", event_types=["task.created"])
    disabled, _ = make_endpoint(url="https://c.example.com/", event_types=["invoice.paid"])
    endpoint_disable(endpoint=disabled)

    with django_capture_on_commit_callbacks(execute=True):
        event = publish(workspace)

    deliveries = list(event.deliveries.all())
    assert [d.endpoint_id for d in deliveries] == [paid.id]
    assert deliveries[0].status == Delivery.Status.PENDING
    assert enqueued == [([paid.id], None)]


def test_publish_body_is_compact_json_in_the_documented_shape(workspace, enqueued):
    data = example("invoice.paid", invoice_id="inv_9", client={"id": "cli_9", "name": "Bäckerei Müller €"})
    event = publish(workspace, data=data)
    body = json.loads(event.payload)
    assert list(body) == ["id", "type", "created_at", "workspace", "data"]
    assert body["id"] == event.id and event.id.startswith("evt_")
    assert body["type"] == "invoice.paid"
    assert body["workspace"] == "acme"
    assert body["data"] == data
    assert body["created_at"].endswith("Z")
    assert body["created_at"] == event.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert " " not in event.payload.split('"data"')[0]


def test_publish_inside_a_rolled_back_transaction_enqueues_nothing(
    workspace, make_endpoint, enqueued, django_capture_on_commit_callbacks
):
    make_endpoint()
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        publish(workspace)
        raise RuntimeError("the caller fails after publishing")
    assert callbacks == []
    assert enqueued == []
    assert not Event.objects.exists()
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("invoice.lost", {}, "event_type"),
        ("webhook.test", {}, "event_type"),
        ("invoice.paid", {"when": timezone.now()}, "data"),
        ("invoice.paid", {"amount": float("nan")}, "data"),
        ("invoice.paid", ["not", "an", "object"], "data"),
        ("invoice.paid", {"note": "a\x00b"}, "data"),
        ("invoice.paid", {"note": "\ud800"}, "data"),
    ],
)
def test_publish_rejects_bad_input_and_writes_nothing(workspace, make_endpoint, enqueued, event_type, data, field):
    make_endpoint()
    with pytest.raises(ValidationError) as info:
        services.event_publish(workspace=workspace, event_type=event_type, data=data)
    assert list(info.value.message_dict) == [field]
    assert not Event.objects.exists()
    assert not Delivery.objects.exists()


def test_publish_query_count_does_not_grow_with_endpoints(workspace, make_endpoint, enqueued):
    make_endpoint()
    with CaptureQueriesContext(connection) as one:
        publish(workspace)
    for n in range(40):
        make_endpoint(url=f"https://h{n}.example.com/")
    with CaptureQueriesContext(connection) as many:
        publish(workspace)
    assert Delivery.objects.count() == 1 + 41
    assert len(many.captured_queries) == len(one.captured_queries)


def test_send_test_event_reaches_a_disabled_endpoint_alone(workspace, make_endpoint, enqueued):
    endpoint, _ = make_endpoint()
    make_endpoint(url="https://other.example.com/")
    endpoint_disable(endpoint=endpoint)
    delivery = services.send_test_event(endpoint=endpoint)
    assert delivery.endpoint == endpoint
    assert delivery.event.type == "webhook.test"
    assert Delivery.objects.count() == 1


# --- attempts -------------------------------------------------------------------


@responses.activate
def test_successful_attempt_sends_signed_body_and_headers(workspace, make_endpoint, enqueued):
    _endpoint, secret = make_endpoint(url=URL)
    event = publish(workspace)
    delivery = event.deliveries.get()
    responses.post(URL, status=204)

    attempt = drain(delivery)

    sent = responses.calls[0].request
    assert sent.body == event.payload.encode()
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"].startswith("ClientFlow-Webhooks/")
    assert sent.headers["X-ClientFlow-Event"] == "invoice.paid"
    assert sent.headers["X-ClientFlow-Delivery"] == str(delivery.id)
    assert sent.headers["X-ClientFlow-Signature"] == signature_header(secret=secret, body=sent.body)
    assert sent.headers["webhook-id"] == event.id
    assert abs(int(sent.headers["webhook-timestamp"]) - time.time()) < 5
    assert sent.headers["X-ClientFlow-Timestamp"] == sent.headers["webhook-timestamp"]
    assert Webhook(secret).verify(sent.body, dict(sent.headers)) == json.loads(event.payload)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("succeeded", 1, 204)
    assert delivery.locked_until is None and delivery.completed_at is not None
    assert attempt.outcome == "success" and attempt.number == 1
    assert attempt.request_headers["X-ClientFlow-Delivery"] == str(delivery.id)
    assert secret not in json.dumps(attempt.request_headers)
    for name in ("X-ClientFlow-Signature", "webhook-signature"):
        stored = attempt.request_headers[name]
        assert stored.endswith("…") and stored != sent.headers[name]


def drain_until_ended(delivery, enqueued):
    """Drain as the wake-ups say, each retry made due at once; returns the retry delays
    scheduled (seconds from the attempt) and checks each got a wake-up at its due time."""
    delays = []
    for _ in range(services.max_attempts()):
        make_due(delivery.id)
        enqueued.clear()
        attempt = drain(delivery)
        delivery.refresh_from_db()
        if delivery.status != "pending":
            assert enqueued == []
            break
        assert enqueued == [([delivery.endpoint_id], delivery.next_attempt_at)]
        delays.append(round((delivery.next_attempt_at - attempt.started_at).total_seconds()))
    return delays


@responses.activate
def test_transient_failures_follow_the_schedule_then_exhaust(workspace, make_endpoint, enqueued, fast_retries):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=503, body="down for maintenance")

    assert drain_until_ended(delivery, enqueued) == [1, 2, 4]

    assert delivery.status == Delivery.Status.EXHAUSTED
    assert delivery.attempt_count == 4
    attempts = list(delivery.attempts.all())
    assert [a.number for a in attempts] == [1, 2, 3, 4]
    assert {a.outcome for a in attempts} == {"transient"}
    assert attempts[0].response_body == "down for maintenance"
    assert delivery in selectors.dead_letters()


@responses.activate
def test_retry_is_scheduled_in_the_database(workspace, make_endpoint, enqueued, fast_retries):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=429)
    drain(delivery)
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    gap = (delivery.next_attempt_at - delivery.attempts.get().started_at).total_seconds()
    assert 1 <= gap < 3
    # Not due yet: a second message for it does nothing.
    assert drain(delivery) is None
    assert delivery.attempts.count() == 1


@responses.activate
@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_4xx_other_than_408_and_429_is_not_retried(workspace, make_endpoint, enqueued, status):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=status)
    enqueued.clear()
    drain(delivery)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("failed", 1, status)
    assert enqueued == []
    assert delivery in selectors.dead_letters()


@responses.activate
def test_connection_error_is_transient_with_a_clear_error(workspace, make_endpoint, enqueued):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, body=requests.exceptions.ConnectionError("Connection refused"))
    attempt = drain(delivery)
    assert attempt.outcome == "transient"
    assert attempt.response_status is None
    assert "connection error" in attempt.error and "refused" in attempt.error


@responses.activate
def test_response_body_is_cut_at_4_kib(workspace, make_endpoint, enqueued):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=500, body="x" * 100_000)
    attempt = drain(delivery)
    assert len(attempt.response_body) == 4096


@responses.activate
def test_a_claimed_delivery_is_not_sent_twice(workspace, make_endpoint, enqueued):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=200)
    Delivery.objects.filter(id=delivery.id).update(locked_until=timezone.now() + timedelta(seconds=30))
    assert drain(delivery) is None
    assert len(responses.calls) == 0


@responses.activate
def test_pending_delivery_of_a_disabled_endpoint_is_cancelled(workspace, make_endpoint, enqueued):
    endpoint, _ = make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    endpoint_disable(endpoint=endpoint)
    assert drain(delivery) is None
    delivery.refresh_from_db()
    assert delivery.status == "cancelled"
    assert len(responses.calls) == 0


@responses.activate
def test_test_event_is_sent_to_a_disabled_endpoint(workspace, make_endpoint, enqueued):
    endpoint, _ = make_endpoint(url=URL)
    endpoint_disable(endpoint=endpoint)
    responses.post(URL, status=200)
    delivery = services.send_test_event(endpoint=endpoint)
    drain(delivery)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert responses.calls[0].request.headers["X-ClientFlow-Event"] == "webhook.test"


# --- the sweeper ----------------------------------------------------------------


def test_sweeper_wakes_endpoints_of_overdue_unclaimed_deliveries_only(workspace, make_endpoint, enqueued, settings):
    settings.WEBHOOKS_SWEEP_GRACE = 10
    old = timezone.now() - timedelta(seconds=60)
    deliveries = {}
    for name in ("overdue", "lost_worker", "in_flight", "just_published", "ended"):
        endpoint, _ = make_endpoint(url=f"https://{name.replace('_', '-')}.example.com/")
        deliveries[name] = publish(workspace).deliveries.get(endpoint=endpoint)
    Delivery.objects.filter(id__in=[d.id for d in deliveries.values()]).exclude(
        id=deliveries["just_published"].id
    ).update(next_attempt_at=old)
    Delivery.objects.filter(id=deliveries["lost_worker"].id).update(locked_until=old)
    Delivery.objects.filter(id=deliveries["in_flight"].id).update(locked_until=timezone.now() + timedelta(seconds=30))
    Delivery.objects.filter(id=deliveries["ended"].id).update(status="exhausted")
    enqueued.clear()

    assert services.deliveries_sweep() == 2

    assert len(enqueued) == 1
    assert sorted(enqueued[0][0]) == sorted([deliveries["overdue"].endpoint_id, deliveries["lost_worker"].endpoint_id])
    assert enqueued[0][1] is None


def test_an_unreachable_broker_does_not_fail_the_publisher(
    workspace, make_endpoint, monkeypatch, django_capture_on_commit_callbacks
):
    make_endpoint()

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(services.celery_app, "producer_or_acquire", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        event = publish(workspace)
    assert event.deliveries.get().status == "pending"  # the sweeper will send it


def test_attempts_that_crash_before_recording_end_exhausted(workspace, make_endpoint, enqueued, monkeypatch):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    calls = []

    def crash(**kwargs):
        calls.append(1)
        raise RuntimeError("worker bug")

    monkeypatch.setattr(services.transport, "post", crash)
    for _ in range(services.max_attempts()):
        assert drain(delivery) is None  # logged, not recorded
        # As if the worker had died: its lease runs out.
        Delivery.objects.filter(id=delivery.id).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert drain(delivery) is None
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.EXHAUSTED
    assert len(calls) == services.max_attempts()
    assert delivery.attempt_count == services.max_attempts()


@responses.activate
def test_an_attempt_that_outlived_its_lease_is_recorded_but_decides_nothing(
    workspace, make_endpoint, enqueued, django_capture_on_commit_callbacks
):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()

    def slow_receiver(request):
        # Meanwhile the lease ran out and another worker claimed the delivery.
        Delivery.objects.filter(id=delivery.id).update(locked_until=timezone.now() + timedelta(minutes=5))
        return (500, {}, "")

    responses.add_callback(responses.POST, URL, callback=slow_receiver)
    with django_capture_on_commit_callbacks(execute=True):
        attempt = drain(delivery)
    assert attempt.outcome == "transient"
    delivery.refresh_from_db()
    assert delivery.locked_until > timezone.now()  # the other worker's lease stands
    assert delivery.last_status_code is None
    assert enqueued == []  # no retry scheduled by the stale attempt


@responses.activate
def test_a_replay_starts_a_fresh_schedule_and_keeps_numbering(workspace, make_endpoint, enqueued, fast_retries, owner):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=503)
    drain_until_ended(delivery, enqueued)
    assert delivery.status == "exhausted"

    result = services.delivery_replay(deliveries=[delivery], actor=owner)
    assert result.replayed == [delivery] and result.refused == {}
    # The same 1 s / 2 s / 4 s after the replay.
    assert drain_until_ended(delivery, enqueued) == [1, 2, 4]
    assert delivery.status == "exhausted"
    assert [a.number for a in delivery.attempts.all()] == list(range(1, 9))


def test_replay_refuses_what_is_not_a_dead_letter(workspace, make_endpoint, enqueued, owner):
    make_endpoint()
    delivery = publish(workspace).deliveries.get()
    result = services.delivery_replay(deliveries=[delivery], actor=owner)
    assert result.replayed == []
    assert result.refused == {services.REFUSED_NOT_DEAD: [delivery]}


def test_an_event_body_over_the_limit_is_refused(workspace, make_endpoint, enqueued, settings):
    settings.WEBHOOKS_MAX_PAYLOAD_BYTES = 1000
    make_endpoint()
    with pytest.raises(ValidationError, match="at most 1000 are allowed"):
        services.event_publish(
            workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", number="x" * 1000)
        )
    assert not Event.objects.exists()
    publish(workspace, data=example("invoice.paid", number="x" * 500))  # under the limit: fine


# --- draining an endpoint: batches, budget, slots, wake-ups --------------------------


@responses.activate
def test_a_batch_of_attempts_costs_three_queries_whatever_its_size(workspace, make_endpoint, enqueued, settings):
    settings.WEBHOOKS_BATCH_SIZE = 5
    endpoint, _ = make_endpoint(url=URL)
    responses.post(URL, status=204)

    def queries_to_drain(count):
        for _ in range(count):
            publish(workspace)
        with CaptureQueriesContext(connection) as queries:
            made = services.endpoint_drain(endpoint_id=endpoint.id)
        assert made == count
        # Savepoints only because the test runs inside a transaction; a worker has none.
        return len([q for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))])

    one, twelve = queries_to_drain(1), queries_to_drain(12)
    # Each batch of up to 5, however many attempts it holds: the endpoint, the claim and the
    # record, one statement each on PostgreSQL (elsewhere the claim and the record take two
    # each). Twelve take two batches more than one.
    per_batch = 3 if connection.vendor == "postgresql" else 5
    assert twelve - one == 2 * per_batch
    assert one <= 5 + per_batch
    assert Delivery.objects.filter(status="succeeded").count() == 13


def _numbered(sql: str, params) -> tuple[str, list]:
    """The statement as psycopg sends it with server-side parameters ($1, $2… in order of
    first appearance), and the values in that order."""
    import re

    if isinstance(params, dict):
        names: list[str] = []

        def number(match):
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        return re.sub(r"%\((\w+)\)s", number, sql), [params[n] for n in names]
    counter = iter(range(1, 1000))
    return re.sub(r"%s", lambda _: f"${next(counter)}", sql), list(params or [])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the plans are PostgreSQL's")
@responses.activate
def test_a_publish_and_a_drain_never_scan_the_deliveries(workspace, make_endpoint, enqueued):
    """On a table of many deliveries, every statement of a publish and of a drain reaches
    the deliveries and attempts it needs through an index. The planner cannot see how
    many rows a JSON argument holds; a statement that joins on one scanned the whole table
    for every batch."""
    endpoint, _ = make_endpoint(url=URL)
    other, _ = make_endpoint(url="https://other.example.com/", event_types=["task.created"])
    responses.post(URL, status=204)
    old = publish(workspace, event_type="task.created")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO deliveries_delivery (id, event_id, endpoint_id, status, attempt_count,
                attempts_before_replay, last_error, created_at, completed_at)
            SELECT gen_random_uuid(), %s, %s, 'succeeded', 1, 0, '', now(), now()
            FROM generate_series(1, 20000)
            """,
            [old.id, other.id],
        )
        cursor.execute("ANALYZE deliveries_delivery")
        cursor.execute("ANALYZE deliveries_deliveryattempt")

    executed = []

    def capture(execute, sql, params, many, context):
        executed.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        publish(workspace)
        publish(workspace)
        assert services.endpoint_drain(endpoint_id=endpoint.id) == 2

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, name, parameter_types::text[] FROM pg_prepared_statements")
        prepared = {statement: (name, types) for statement, name, types in cursor.fetchall()}
        # What PostgreSQL may use after five executions of a prepared statement.
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")

    plans = {"custom": 0, "generic": 0}
    for sql, params in executed:
        if "deliveries_delivery" not in sql:
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on deliveries_delivery" not in plan, f"{sql[:200]}\n{plan}"
            plans["custom"] += 1
            numbered, values = _numbered(sql, params)
            if numbered in prepared:
                name, types = prepared[numbered]
                arguments = ", ".join(f"%s::{t}" for t in types)
                cursor.execute(f"EXPLAIN EXECUTE {name}({arguments})", values)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "Seq Scan on deliveries_delivery" not in plan, f"generic: {sql[:200]}\n{plan}"
                plans["generic"] += 1
    assert plans["custom"] >= 4  # the publishes, the claim and the record at least
    assert plans["generic"] >= 3  # the publish's insert, the claim and the record
    assert Delivery.objects.filter(endpoint=endpoint, status="succeeded").count() == 2


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
@pytest.mark.django_db(transaction=True)  # to start a new session
@pytest.mark.parametrize("prepared", [True, False])
@responses.activate
def test_the_hot_statements_are_prepared_once_per_connection(workspace, make_endpoint, enqueued, settings, prepared):
    settings.WEBHOOKS_PREPARED_STATEMENTS = prepared
    endpoint, _ = make_endpoint(url=URL)
    responses.post(URL, status=204)
    connection.close()  # a new session: none prepared yet
    for _ in range(3):
        publish(workspace)
        publish(workspace)
        assert services.endpoint_drain(endpoint_id=endpoint.id) == 2

    statements = _prepared_statements()
    if not prepared:
        assert statements == []
        return
    # The publish's insert, the drain's endpoint, claim and record: each once, however many
    # times it ran, with server-side parameters ($1…) and the status a literal. Not the
    # read of subscribed endpoints: its best plan depends on the workspace.
    assert not any(s.lstrip().startswith("SELECT e.id FROM") for s in statements)
    for start in ("WITH events AS", 'SELECT "workspace_id"', "WITH claimed AS", "WITH attempts AS"):
        assert sum(s.lstrip().startswith(start) for s in statements) == 1, (start, statements)
    claim = next(s for s in statements if s.lstrip().startswith("WITH claimed AS"))
    assert "$1" in claim and "status = 'pending'" in claim
    assert Delivery.objects.filter(endpoint=endpoint, status="succeeded").count() == 6


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
@pytest.mark.django_db(transaction=True)  # outside a transaction, as a worker runs
def test_a_session_whose_prepared_statements_went_stale_is_replaced(workspace, make_endpoint):
    """A prepared statement the server lost, or whose result a migration changed while
    workers ran: that statement fails, and the session is closed so the next one works."""
    endpoint, _ = make_endpoint()
    now = timezone.now()
    assert selectors.endpoint_next_due(endpoint_id=endpoint.id, now=now) is None  # prepared now
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # behind psycopg's back
    session = connection.connection

    with pytest.raises(DatabaseError, match="does not exist"):
        selectors.endpoint_next_due(endpoint_id=endpoint.id, now=now)

    assert connection.connection is None
    assert selectors.endpoint_next_due(endpoint_id=endpoint.id, now=now) is None
    assert connection.connection is not session


@responses.activate
def test_a_drain_stops_at_its_budget_and_gives_back_what_it_did_not_send(workspace, make_endpoint, enqueued, settings):
    settings.WEBHOOKS_DRAIN_SECONDS = 0
    endpoint, _ = make_endpoint(url=URL)
    responses.post(URL, status=204)
    for _ in range(4):
        publish(workspace)
    enqueued.clear()

    assert services.endpoint_drain(endpoint_id=endpoint.id) == 1  # always at least one

    assert Delivery.objects.filter(status="succeeded").count() == 1
    rest = Delivery.objects.filter(status="pending")
    assert rest.count() == 3
    assert {(d.attempt_count, d.locked_until) for d in rest} == {(0, None)}
    assert enqueued == [([endpoint.id], None)]  # woken again at once for the rest


@responses.activate
def test_a_slow_endpoint_holds_no_batch_of_another(workspace, make_endpoint, enqueued):
    slow, _ = make_endpoint(url="https://slow.example.com/")
    make_endpoint(url=URL, event_types=["task.created"])
    responses.post("https://slow.example.com/", status=503)
    responses.post(URL, status=204)
    publish(workspace)
    fast_delivery = publish(workspace, event_type="task.created").deliveries.get()

    services.endpoint_drain(endpoint_id=slow.id)

    # Draining one endpoint claims only its own deliveries.
    fast_delivery.refresh_from_db()
    assert (fast_delivery.attempt_count, fast_delivery.locked_until) == (0, None)
    assert [c.request.url for c in responses.calls] == ["https://slow.example.com/"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the slot bound needs PostgreSQL")
@responses.activate
def test_no_more_than_the_concurrency_setting_deliver_to_one_endpoint(
    workspace, make_endpoint, enqueued, settings, other_connection
):
    settings.WEBHOOKS_ENDPOINT_CONCURRENCY = 2
    endpoint, _ = make_endpoint(url=URL)
    responses.post(URL, status=204)
    settings.WEBHOOKS_BATCH_SIZE = 1
    settings.WEBHOOKS_DRAIN_SECONDS = 0
    for _ in range(3):
        publish(workspace)
    keys = [endpoint.id * services.ADVISORY_LOCK_SLOTS + slot for slot in range(2)]
    marks = caches["deliveries"]
    marks.delete(services._answering_mark(endpoint.id))
    # Another worker holds the first slot of an endpoint not known to answer: that is
    # all it gets (slow start).
    other_connection.execute("SELECT pg_advisory_lock(%s)", [keys[0]])
    assert services.endpoint_drain(endpoint_id=endpoint.id) == 0
    # Once it has answered, a second worker may join in.
    marks.set(services._answering_mark(endpoint.id), 1)
    assert services.endpoint_drain(endpoint_id=endpoint.id) == 1
    # Both slots held elsewhere: nothing is sent.
    other_connection.execute("SELECT pg_advisory_lock(%s)", [keys[1]])
    assert services.endpoint_drain(endpoint_id=endpoint.id) == 0
    assert len(responses.calls) == 1
    other_connection.execute("SELECT pg_advisory_unlock(%s)", [keys[1]])
    assert services.endpoint_drain(endpoint_id=endpoint.id) == 1
    assert marks.get(services._answering_mark(endpoint.id)) == 1  # it answered again
    # The slot it took is free again.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        assert cursor.fetchone()[0] == 0


def test_deleting_an_endpoint_cancels_its_pending_deliveries(workspace, make_endpoint, enqueued):
    from endpoints.services import endpoint_delete

    endpoint, _ = make_endpoint()
    delivery = publish(workspace).deliveries.get()
    endpoint_delete(endpoint=endpoint)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.endpoint_id, delivery.last_error) == (
        "cancelled",
        None,
        "The endpoint was deleted.",
    )


def test_publishing_in_bulk_is_a_constant_number_of_queries_and_one_wake_up_per_endpoint(
    workspace, make_endpoint, enqueued, django_capture_on_commit_callbacks
):
    first, _ = make_endpoint(url="https://a.example.com/")
    second, _ = make_endpoint(url="https://b.example.com/")
    with CaptureQueriesContext(connection) as three:
        services.events_publish(
            workspace=workspace,
            event_type="invoice.paid",
            data_list=[example("invoice.paid", invoice_id=f"inv_{n}") for n in range(3)],
        )
    with (
        CaptureQueriesContext(connection) as hundred,
        django_capture_on_commit_callbacks(execute=True),
    ):
        events = services.events_publish(
            workspace=workspace,
            event_type="invoice.paid",
            data_list=[example("invoice.paid", invoice_id=f"inv_{n}") for n in range(100)],
        )
    assert len(hundred.captured_queries) == len(three.captured_queries)
    assert [json.loads(e.payload)["data"]["invoice_id"] for e in events] == [f"inv_{n}" for n in range(100)]
    assert Delivery.objects.filter(event__in=events).count() == 200
    assert enqueued == [([first.id, second.id], None)]


def test_wake_ups_wait_one_per_endpoint_in_the_queue(workspace, make_endpoint, monkeypatch, settings, sent):
    endpoint, _ = make_endpoint()
    caches["deliveries"].delete(services._wake_mark(endpoint.id, None))

    services.endpoints_wake(endpoint_ids=[endpoint.id])
    services.endpoints_wake(endpoint_ids=[endpoint.id])  # one is queued already
    assert sent == [(services.DRAIN_TASK, endpoint.id)]
    services.endpoint_drain(endpoint_id=endpoint.id)  # a worker takes it: the next publish wakes it again
    services.endpoints_wake(endpoint_ids=[endpoint.id])
    assert sent == [(services.DRAIN_TASK, endpoint.id)] * 2
    # A mark whose message was lost lasts WAKE_MARK_SECONDS, less than the sweeper's grace.
    assert services.WAKE_MARK_SECONDS < settings.WEBHOOKS_SWEEP_GRACE


def test_marks_are_hints_a_failing_store_only_costs_messages(workspace, make_endpoint, monkeypatch, sent):

    class Down:
        def __getattr__(self, name):
            raise ConnectionError("mark store down")

    monkeypatch.setattr(services, "caches", {"deliveries": Down()})
    endpoint, _ = make_endpoint()
    services.endpoints_wake(endpoint_ids=[endpoint.id])
    services.endpoints_wake(endpoint_ids=[endpoint.id])
    assert sent == [(services.DRAIN_TASK, endpoint.id)] * 2


def test_a_large_fan_out_hands_its_wake_ups_to_the_workers(monkeypatch, settings, sent):
    settings.WEBHOOKS_FANOUT_CHUNK = 100
    services.endpoints_wake(endpoint_ids=list(range(1, 251)))
    assert [(task, len(ids)) for task, ids in sent] == [
        (services.WAKE_TASK, 100),
        (services.WAKE_TASK, 100),
        (services.WAKE_TASK, 50),
    ]
    assert [i for _, ids in sent for i in ids] == list(range(1, 251))


@responses.activate
def test_an_endpoint_that_does_not_answer_loses_its_extra_slots(workspace, make_endpoint, enqueued):
    endpoint, _ = make_endpoint(url=URL)
    marks = caches["deliveries"]
    marks.set(services._answering_mark(endpoint.id), 1)
    responses.post(URL, body=requests.exceptions.ConnectTimeout("timed out"))
    publish(workspace)
    services.endpoint_drain(endpoint_id=endpoint.id)
    assert marks.get(services._answering_mark(endpoint.id)) is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the slot bound needs PostgreSQL")
@responses.activate
def test_a_wake_up_turned_away_by_busy_slots_leaves_the_endpoint_to_the_holder(
    workspace, make_endpoint, enqueued, other_connection
):
    endpoint, _ = make_endpoint(url=URL)
    responses.post(URL, status=204)
    delivery = publish(workspace).deliveries.get()
    caches["deliveries"].delete(services._answering_mark(endpoint.id))
    other_connection.execute("SELECT pg_advisory_lock(%s)", [endpoint.id * services.ADVISORY_LOCK_SLOTS])
    enqueued.clear()
    assert services.endpoint_drain(endpoint_id=endpoint.id) == 0
    assert enqueued == []  # the holder reads what is due once it lets go of its slot
    other_connection.execute("SELECT pg_advisory_unlock_all()")
    # The holder's drain ends, after its release, by waking the endpoint for what is due.
    assert services.endpoint_drain(endpoint_id=endpoint.id) == 1
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"


@responses.activate
def test_every_drain_hands_the_endpoint_on_to_its_next_due_delivery(workspace, make_endpoint, enqueued):
    endpoint, _ = make_endpoint(url=URL)
    responses.post(URL, status=204)
    retrying = publish(workspace).deliveries.get()
    due_now = publish(workspace).deliveries.get()
    # A retry another drain scheduled for later; this drain sends only what is due now.
    later = timezone.now() + timedelta(seconds=4)
    Delivery.objects.filter(id=retrying.id).update(next_attempt_at=later, attempt_count=1)
    enqueued.clear()

    assert services.endpoint_drain(endpoint_id=endpoint.id) == 1

    due_now.refresh_from_db()
    assert due_now.status == "succeeded"
    assert enqueued == [([endpoint.id], later)]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_a_large_fan_out_is_written_by_copy_with_the_same_rows(
    workspace, make_endpoint, enqueued, monkeypatch, django_capture_on_commit_callbacks
):
    endpoints = [make_endpoint(url=f"https://h{n}.example.com/")[0] for n in range(3)]
    monkeypatch.setattr(services, "COPY_THRESHOLD", 2)
    with django_capture_on_commit_callbacks(execute=True):
        events = services.events_publish(
            workspace=workspace, event_type="invoice.paid", data_list=[example("invoice.paid")] * 2
        )
    rows = Delivery.objects.filter(event__in=events)
    assert sorted((d.event_id, d.endpoint_id) for d in rows) == sorted(
        (e.id, endpoint.id) for e in events for endpoint in endpoints
    )
    for delivery in rows:
        assert (delivery.status, delivery.attempt_count, delivery.attempts_before_replay) == ("pending", 0, 0)
        assert delivery.next_attempt_at == delivery.event.created_at
        assert (delivery.locked_until, delivery.completed_at, delivery.last_error) == (None, None, "")
    assert enqueued == [([e.id for e in endpoints], None)]


# --- the doorbell: a busy endpoint's drain waits for the next publish ------------------


@pytest.fixture
def doorbell(settings):
    """The Redis mark store the doorbell needs, and a fresh memory of recent drains."""
    from clientflow_webhooks.cache import RedisCache
    from tests.conftest import skip_or_fail

    if not isinstance(caches["deliveries"], RedisCache):
        skip_or_fail("the doorbell needs the Redis mark store (CELERY_BROKER_URL=redis://…)")
    services._drained_at.clear()
    yield
    services._drained_at.clear()


def _drain_in_thread(endpoint_id):
    """endpoint_drain on a worker thread of its own; returns (thread, result holder)."""
    import threading

    from django.db import connection as thread_connection

    made: list[int] = []

    def run():
        try:
            made.append(services.endpoint_drain(endpoint_id=endpoint_id))
        finally:
            thread_connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, made


def _wait_for(condition, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
@responses.activate
def test_a_busy_endpoints_drain_waits_at_its_doorbell_and_a_publish_rings_it(
    workspace, make_endpoint, sent, settings, doorbell
):
    settings.WEBHOOKS_LINGER_SECONDS = 2
    settings.WEBHOOKS_DRAIN_SECONDS = 30
    endpoint, _ = make_endpoint(url=URL)
    responses.post(URL, status=204)
    mark = services._wake_mark(endpoint.id, None)
    publish(workspace)
    assert services.endpoint_drain(endpoint_id=endpoint.id) == 1  # drained now: it counts as busy
    second = publish(workspace).deliveries.get()
    assert sent == [(services.DRAIN_TASK, endpoint.id)] * 2  # nobody waits yet: messages
    sent.clear()

    thread, made = _drain_in_thread(endpoint.id)
    # The second delivery sent, the drain holds the wake-up mark and waits at the bell.
    _wait_for(lambda: Delivery.objects.get(id=second.id).status == "succeeded" and caches["deliveries"].get(mark))
    third = publish(workspace).deliveries.get()
    thread.join(timeout=20)

    assert not thread.is_alive()
    assert made == [2]  # the second and the third, in one drain
    assert Delivery.objects.get(id=third.id).status == "succeeded"
    assert sent == []  # the publish rang; it sent no message
    assert caches["deliveries"].get(mark) is None  # let go: the next publish sends one again
    publish(workspace)
    assert sent == [(services.DRAIN_TASK, endpoint.id)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", ["not drained lately", "does not answer"])
@responses.activate
def test_only_a_busy_endpoint_that_answers_is_waited_for(case, workspace, make_endpoint, sent, settings, doorbell):
    import time

    settings.WEBHOOKS_LINGER_SECONDS = 30
    settings.WEBHOOKS_DRAIN_SECONDS = 60
    endpoint, _ = make_endpoint(url=URL)
    if case == "does not answer":
        responses.post(URL, body=requests.exceptions.ConnectTimeout("timed out"))
        services._drained_at[endpoint.id] = time.monotonic()
    else:
        responses.post(URL, status=204)
    publish(workspace)

    started = time.monotonic()
    assert services.endpoint_drain(endpoint_id=endpoint.id) == 1
    assert time.monotonic() - started < 10  # it did not wait the 30 s at the bell
    assert caches["deliveries"].get(services._wake_mark(endpoint.id, None)) is None
