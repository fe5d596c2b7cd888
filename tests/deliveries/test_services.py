import json
from datetime import timedelta

import pytest
import requests
import responses
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import selectors, services
from deliveries.models import Delivery, Event
from deliveries.signing import signature_header
from endpoints.services import endpoint_disable

URL = "https://hooks.example.com/clientflow"


@pytest.fixture
def enqueued(monkeypatch):
    """Record what would be sent to the broker instead of sending it."""
    calls: list[tuple[list[str], float]] = []

    def fake_enqueue(*, delivery_ids, countdown=0):
        calls.append((list(delivery_ids), countdown))

    monkeypatch.setattr(services, "deliveries_enqueue", fake_enqueue)
    return calls


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOKS_RETRY_DELAYS = [1, 2, 4]
    settings.WEBHOOKS_TIMEOUT = 5


def publish(workspace, event_type="invoice.paid", data=None):
    return services.event_publish(workspace=workspace, event_type=event_type, data=data or {"invoice_id": "inv_1"})


def make_due(delivery_id):
    Delivery.objects.filter(id=delivery_id).update(next_attempt_at=timezone.now())


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
    assert enqueued == [([str(deliveries[0].id)], 0)]


def test_publish_body_is_compact_json_in_the_documented_shape(workspace, enqueued):
    event = publish(workspace, data={"invoice_id": "inv_9", "amount": "10.00", "währung": "€"})
    body = json.loads(event.payload)
    assert list(body) == ["id", "type", "created_at", "workspace", "data"]
    assert body["id"] == event.id and event.id.startswith("evt_")
    assert body["type"] == "invoice.paid"
    assert body["workspace"] == "acme"
    assert body["data"] == {"invoice_id": "inv_9", "amount": "10.00", "währung": "€"}
    assert body["created_at"].endswith("Z")
    assert body["created_at"] == event.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert " " not in event.payload.replace("ä", "").replace("€", "").split('"data"')[0]


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

    attempt = services.delivery_attempt(delivery_id=delivery.id)

    sent = responses.calls[0].request
    assert sent.body == event.payload.encode()
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"].startswith("ClientFlow-Webhooks/")
    assert sent.headers["X-ClientFlow-Event"] == "invoice.paid"
    assert sent.headers["X-ClientFlow-Delivery"] == str(delivery.id)
    assert sent.headers["X-ClientFlow-Signature"] == signature_header(secret=secret, body=sent.body)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("succeeded", 1, 204)
    assert delivery.locked_until is None and delivery.completed_at is not None
    assert attempt.outcome == "success" and attempt.number == 1
    assert attempt.request_headers["X-ClientFlow-Delivery"] == str(delivery.id)
    assert secret not in json.dumps(attempt.request_headers)
    stored = attempt.request_headers["X-ClientFlow-Signature"]
    assert stored.endswith("…") and stored != sent.headers["X-ClientFlow-Signature"]


@responses.activate
def test_transient_failures_follow_the_schedule_then_exhaust(
    workspace, make_endpoint, enqueued, fast_retries, django_capture_on_commit_callbacks
):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=503, body="down for maintenance")
    enqueued.clear()

    for _ in range(4):
        make_due(delivery.id)
        with django_capture_on_commit_callbacks(execute=True):
            services.delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.EXHAUSTED
    assert delivery.attempt_count == 4
    assert [c[1] for c in enqueued] == [1, 2, 4]
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
    services.delivery_attempt(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    gap = (delivery.next_attempt_at - delivery.attempts.get().started_at).total_seconds()
    assert 1 <= gap < 3
    # Not due yet: a second message for it does nothing.
    assert services.delivery_attempt(delivery_id=delivery.id) is None
    assert delivery.attempts.count() == 1


@responses.activate
@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_4xx_other_than_408_and_429_is_not_retried(workspace, make_endpoint, enqueued, status):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=status)
    enqueued.clear()
    services.delivery_attempt(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("failed", 1, status)
    assert enqueued == []
    assert delivery in selectors.dead_letters()


@responses.activate
def test_connection_error_is_transient_with_a_clear_error(workspace, make_endpoint, enqueued):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, body=requests.exceptions.ConnectionError("Connection refused"))
    attempt = services.delivery_attempt(delivery_id=delivery.id)
    assert attempt.outcome == "transient"
    assert attempt.response_status is None
    assert "connection error" in attempt.error and "refused" in attempt.error


@responses.activate
def test_response_body_is_cut_at_4_kib(workspace, make_endpoint, enqueued):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=500, body="x" * 100_000)
    attempt = services.delivery_attempt(delivery_id=delivery.id)
    assert len(attempt.response_body) == 4096


@responses.activate
def test_a_claimed_delivery_is_not_sent_twice(workspace, make_endpoint, enqueued):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=200)
    Delivery.objects.filter(id=delivery.id).update(locked_until=timezone.now() + timedelta(seconds=30))
    assert services.delivery_attempt(delivery_id=delivery.id) is None
    assert len(responses.calls) == 0


@responses.activate
def test_pending_delivery_of_a_disabled_endpoint_is_cancelled(workspace, make_endpoint, enqueued):
    endpoint, _ = make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    endpoint_disable(endpoint=endpoint)
    assert services.delivery_attempt(delivery_id=delivery.id) is None
    delivery.refresh_from_db()
    assert delivery.status == "cancelled"
    assert len(responses.calls) == 0


@responses.activate
def test_test_event_is_sent_to_a_disabled_endpoint(workspace, make_endpoint, enqueued):
    endpoint, _ = make_endpoint(url=URL)
    endpoint_disable(endpoint=endpoint)
    responses.post(URL, status=200)
    delivery = services.send_test_event(endpoint=endpoint)
    services.delivery_attempt(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert responses.calls[0].request.headers["X-ClientFlow-Event"] == "webhook.test"


# --- the sweeper ----------------------------------------------------------------


def test_sweeper_re_enqueues_overdue_unclaimed_deliveries_only(workspace, make_endpoint, enqueued, settings):
    settings.WEBHOOKS_SWEEP_GRACE = 10
    make_endpoint()
    old = timezone.now() - timedelta(seconds=60)
    overdue = publish(workspace).deliveries.get()
    lost_worker = publish(workspace).deliveries.get()
    in_flight = publish(workspace).deliveries.get()
    just_published = publish(workspace).deliveries.get()
    Delivery.objects.filter(id__in=[overdue.id, lost_worker.id, in_flight.id]).update(next_attempt_at=old)
    Delivery.objects.filter(id=lost_worker.id).update(locked_until=old)
    Delivery.objects.filter(id=in_flight.id).update(locked_until=timezone.now() + timedelta(seconds=30))
    enqueued.clear()

    assert services.deliveries_sweep() == 2

    assert sorted(enqueued[0][0]) == sorted([str(overdue.id), str(lost_worker.id)])
    assert str(just_published.id) not in enqueued[0][0]


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
        with pytest.raises(RuntimeError):
            services.delivery_attempt(delivery_id=delivery.id)
        # The worker is gone; its lease runs out.
        Delivery.objects.filter(id=delivery.id).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert services.delivery_attempt(delivery_id=delivery.id) is None
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
        attempt = services.delivery_attempt(delivery_id=delivery.id)
    assert attempt.outcome == "transient"
    delivery.refresh_from_db()
    assert delivery.locked_until > timezone.now()  # the other worker's lease stands
    assert delivery.last_status_code is None
    assert enqueued == []  # no retry scheduled by the stale attempt


def test_the_sweeper_sends_an_overdue_delivery_once_per_grace_period(workspace, make_endpoint, enqueued, settings):
    settings.WEBHOOKS_SWEEP_GRACE = 10
    make_endpoint()
    delivery = publish(workspace).deliveries.get()
    Delivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now() - timedelta(seconds=60))
    enqueued.clear()
    assert services.deliveries_sweep() == 1
    assert services.deliveries_sweep() == 0
    assert enqueued == [([str(delivery.id)], 0)]


@responses.activate
def test_a_replay_starts_a_fresh_schedule_and_keeps_numbering(
    workspace, make_endpoint, enqueued, fast_retries, django_capture_on_commit_callbacks, owner
):
    make_endpoint(url=URL)
    delivery = publish(workspace).deliveries.get()
    responses.post(URL, status=503)
    for _ in range(4):
        make_due(delivery.id)
        services.delivery_attempt(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "exhausted"

    result = services.delivery_replay(deliveries=[delivery], actor=owner)
    assert result.replayed == [delivery] and result.refused == {}
    enqueued.clear()
    for _ in range(4):
        make_due(delivery.id)
        with django_capture_on_commit_callbacks(execute=True):
            services.delivery_attempt(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "exhausted"
    assert [a.number for a in delivery.attempts.all()] == list(range(1, 9))
    assert [c[1] for c in enqueued] == [1, 2, 4]  # the same 1 s / 2 s / 4 s after the replay


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
        services.event_publish(workspace=workspace, event_type="invoice.paid", data={"blob": "x" * 1000})
    assert not Event.objects.exists()
    publish(workspace, data={"blob": "x" * 800})  # under the limit: fine
