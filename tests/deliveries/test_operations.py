"""Auto-disable of dead endpoints, the emails to a workspace's owners and admins, and
retention: real rows, with the clock moved (time-machine)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from clientflow_webhooks.models import Membership
from deliveries import notices, operations, services
from deliveries.models import Delivery, DeliveryAttempt, DeliveryReplay, Event
from endpoints.models import Endpoint, EndpointAuditEntry
from endpoints.services import endpoint_create, endpoint_enable
from tests.conftest import make_user
from tests.deliveries.test_metrics import invoice_paid
from tests.deliveries.test_services import other_connection  # noqa: F401 - a fixture

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # when the endpoints below start failing
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """Publishing would wake workers through the broker; these tests make the rows themselves."""
    monkeypatch.setattr(services, "endpoints_wake", lambda **kwargs: None)


@pytest.fixture
def notices_sent(monkeypatch):
    """Run the email task at once, as a worker would, instead of queueing it."""
    sent: list[tuple[int, str]] = []

    def enqueue(*, endpoint_id, kind, details):
        sent.append((endpoint_id, kind))
        notices.endpoint_notice_send(endpoint_id=endpoint_id, kind=kind, details=details)

    monkeypatch.setattr(notices, "notice_enqueue", enqueue)
    return sent


@pytest.fixture
def managers(workspace, owner):
    owner.email = "olivia@example.com"
    owner.save()
    make_user("adam", workspace, Membership.Role.ADMIN).__class__.objects.filter(username="adam").update(
        email="adam@example.com"
    )
    make_user("mia", workspace, Membership.Role.MEMBER).__class__.objects.filter(username="mia").update(
        email="mia@example.com"
    )
    return ["adam@example.com", "olivia@example.com"]


@pytest.fixture
def settings_5_days(settings):
    settings.WEBHOOKS_AUTO_DISABLE_DAYS = 5
    settings.WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS = 10
    settings.WEBHOOKS_SITE_URL = "https://app.clientflow.example"


def endpoint_at(workspace, at: datetime, url="https://hooks.example.com/clientflow") -> tuple[Endpoint, str]:
    with time_machine.travel(at, tick=False):
        return endpoint_create(workspace=workspace, url=url, event_types=["invoice.paid"])


def event_at(workspace, at: datetime, event_type: str = "invoice.paid") -> Event:
    """An event as publishing writes it, published at `at`."""
    data = invoice_paid()
    payload = f'{{"type":"{event_type}","data":{{}}}}'
    return Event.objects.create(workspace=workspace, type=event_type, data=data, payload=payload, created_at=at)


def made(workspace, endpoint, at: datetime, status: str, error: str = "HTTP 503", event: Event | None = None):
    """A delivery of `event` (or a new one) to `endpoint` made at `at`, that ended 7 s later
    with `status` (or is still pending)."""
    ended = status != Delivery.Status.PENDING
    with time_machine.travel(at, tick=False):
        return Delivery.objects.create(
            event=event or event_at(workspace, at),
            endpoint=endpoint,
            status=status,
            attempt_count=4 if status == Delivery.Status.EXHAUSTED else 1,
            completed_at=at + timedelta(seconds=7) if ended else None,
            next_attempt_at=None if ended else at + timedelta(seconds=7),
            last_error="" if status == Delivery.Status.SUCCEEDED else error,
        )


def failing_for(workspace, endpoint, *, days: float, every: timedelta = timedelta(hours=12), error="HTTP 503"):
    """Dead letters from START, one every `every`, for `days`."""
    at = START
    while at <= START + timedelta(days=days):
        made(workspace, endpoint, at, Delivery.Status.EXHAUSTED, error=error)
        at += every


def auto_disable_at(moment: datetime) -> list[Endpoint]:
    with time_machine.travel(moment, tick=False):
        return operations.endpoints_auto_disable()


# --- auto-disable -----------------------------------------------------------------------


def test_auto_disable_fires_at_the_threshold_and_not_before(
    settings_5_days, workspace, managers, notices_sent, mailoutbox, django_capture_on_commit_callbacks
):
    endpoint, secret = endpoint_at(workspace, START - 3 * DAY)
    made(workspace, endpoint, START - 2 * DAY, Delivery.Status.SUCCEEDED)
    failing_for(workspace, endpoint, days=5.5, error="connection error: refused")  # 12 dead letters
    healthy, _ = endpoint_at(workspace, START - 3 * DAY, url="https://other.example.com/hook")
    made(workspace, healthy, START + DAY, Delivery.Status.SUCCEEDED)

    # Failing since START (its first dead letter was made then): 5 days less a second is not enough.
    with django_capture_on_commit_callbacks(execute=True):
        assert auto_disable_at(START + 5 * DAY - timedelta(seconds=1)) == []
    endpoint.refresh_from_db()
    assert endpoint.enabled and not mailoutbox

    at = START + 5 * DAY
    with django_capture_on_commit_callbacks(execute=True):
        assert auto_disable_at(at) == [endpoint]
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.disabled_automatically_at == at
    assert endpoint.disabled_reason == (
        "Every delivery for 5 days ended as a dead letter: 11 of them since 2026-03-02 12:00 UTC, "
        "the last one because of connection error: refused."
    )
    assert endpoint.secret == secret
    assert Endpoint.objects.get(id=healthy.id).enabled
    entry = EndpointAuditEntry.objects.filter(endpoint_id=endpoint.id).latest("created_at")
    assert (entry.action, entry.actor) == ("disabled", None)
    assert entry.changes == {"disabled_reason": [None, endpoint.disabled_reason]}

    # The owners and admins are told, members are not.
    assert notices_sent == [(endpoint.id, notices.AUTO_DISABLED)]
    assert sorted(m.to[0] for m in mailoutbox) == managers
    mail = mailoutbox[0]
    assert mail.subject == "Webhook endpoint https://hooks.example.com/clientflow was disabled"
    assert endpoint.disabled_reason in mail.body
    assert f"https://app.clientflow.example/workspaces/acme/settings/webhooks/{endpoint.id}/" in mail.body
    assert "signing secret stays the same" in mail.body
    assert secret not in mail.body

    # Once disabled, nothing more happens to it.
    with django_capture_on_commit_callbacks(execute=True):
        assert auto_disable_at(at + DAY) == []
    assert len(mailoutbox) == 2


def test_a_success_in_the_period_keeps_the_endpoint_enabled(settings_5_days, workspace, notices_sent):
    endpoint, _ = endpoint_at(workspace, START - 3 * DAY)
    made(workspace, endpoint, START - DAY, Delivery.Status.EXHAUSTED)
    failing_for(workspace, endpoint, days=6)
    made(workspace, endpoint, START + 4 * DAY, Delivery.Status.SUCCEEDED)
    assert auto_disable_at(START + 6 * DAY) == []
    assert Endpoint.objects.get(id=endpoint.id).enabled


@pytest.mark.parametrize("earlier", ["an old dead letter", "a test event"])
def test_a_burst_after_an_earlier_failure_is_not_a_failing_period(earlier, settings_5_days, workspace, notices_sent):
    endpoint, _ = endpoint_at(workspace, START - 30 * DAY)
    # Judged at START + 2 days: the period began at START - 3 days.
    if earlier == "a test event":  # sent just before the period, before the receiver was up
        test_event = event_at(workspace, START - 4 * DAY, "webhook.test")
        made(workspace, endpoint, START - 4 * DAY, Delivery.Status.FAILED, event=test_event)
    else:  # then silence for weeks
        made(workspace, endpoint, START - 20 * DAY, Delivery.Status.EXHAUSTED)
    # A one-hour outage: 12 dead letters, every five minutes.
    failing_for(workspace, endpoint, days=1 / 24, every=timedelta(minutes=5))
    assert auto_disable_at(START + 2 * DAY) == []
    assert Endpoint.objects.get(id=endpoint.id).enabled


def test_fewer_dead_letters_than_the_minimum_do_not_disable(settings_5_days, workspace, notices_sent):
    endpoint, _ = endpoint_at(workspace, START - 3 * DAY)
    failing_for(workspace, endpoint, days=8, every=DAY)  # 9 dead letters, 5 of them in any 5 days
    assert auto_disable_at(START + 8 * DAY) == []
    assert Endpoint.objects.get(id=endpoint.id).enabled


def test_the_minimum_is_a_setting(settings_5_days, settings, workspace, notices_sent):
    settings.WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS = 5
    endpoint, _ = endpoint_at(workspace, START - 3 * DAY)
    failing_for(workspace, endpoint, days=8, every=DAY)
    assert auto_disable_at(START + 8 * DAY) == [endpoint]


def test_pending_deliveries_do_not_count_either_way(settings_5_days, workspace, notices_sent):
    endpoint, _ = endpoint_at(workspace, START - 3 * DAY)
    failing_for(workspace, endpoint, days=5)
    made(workspace, endpoint, START + 5 * DAY - timedelta(minutes=1), Delivery.Status.PENDING)
    assert auto_disable_at(START + 5 * DAY) == [endpoint]


def test_a_dead_letter_replayed_and_delivered_in_the_period_keeps_it_enabled(
    settings_5_days, workspace, notices_sent, owner
):
    endpoint, _ = endpoint_at(workspace, START - 10 * DAY)
    old = made(workspace, endpoint, START - 9 * DAY, Delivery.Status.EXHAUSTED)
    failing_for(workspace, endpoint, days=5)
    with time_machine.travel(START + 2 * DAY, tick=False):
        assert services.delivery_replay(deliveries=[old], actor=owner).replayed
    Delivery.objects.filter(id=old.id).update(status="succeeded", completed_at=START + 2 * DAY)
    assert auto_disable_at(START + 5 * DAY) == []


def test_re_enabling_keeps_the_secret_and_starts_the_count_again(
    settings_5_days, workspace, owner, notices_sent, django_capture_on_commit_callbacks
):
    endpoint, secret = endpoint_at(workspace, START - 3 * DAY)
    failing_for(workspace, endpoint, days=10)
    assert auto_disable_at(START + 5 * DAY) == [endpoint]

    with time_machine.travel(START + 5 * DAY + timedelta(hours=1), tick=False):
        endpoint_enable(endpoint=Endpoint.objects.get(id=endpoint.id), actor=owner)
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.secret == secret
    assert (endpoint.disabled_reason, endpoint.disabled_automatically_at) == ("", None)
    # Still failing, but not for 5 days since it was enabled.
    assert auto_disable_at(START + 8 * DAY) == []
    assert auto_disable_at(START + 10 * DAY + timedelta(hours=2)) == [endpoint]


def test_auto_disable_is_off_with_zero_days(settings_5_days, settings, workspace, notices_sent):
    settings.WEBHOOKS_AUTO_DISABLE_DAYS = 0
    endpoint, _ = endpoint_at(workspace, START - 3 * DAY)
    failing_for(workspace, endpoint, days=10)
    assert auto_disable_at(START + 10 * DAY) == []


# --- the first dead letters' email ------------------------------------------------------


def dead_letter_seen(endpoint_id: int, delivery: Delivery, at: datetime) -> None:
    """What a drain does when a delivery ends as a dead letter (`services._ended`); each
    call is another drain, with its own copy of the endpoint."""
    with time_machine.travel(at, tick=False):
        endpoint = Endpoint.objects.get(id=endpoint_id)
        delivery.endpoint = endpoint
        notices.dead_letter_seen(endpoint=endpoint, delivery=delivery, error=delivery.last_error)


def test_dead_letters_email_the_managers_at_most_once_a_day_per_endpoint(
    settings_5_days, workspace, managers, notices_sent, mailoutbox, django_capture_on_commit_callbacks
):
    endpoint, secret = endpoint_at(workspace, START - DAY)
    other, _ = endpoint_at(workspace, START - DAY, url="https://other.example.com/hook")
    first = made(workspace, endpoint, START, Delivery.Status.FAILED, error="HTTP 410")

    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_seen(endpoint.id, first, START)
        dead_letter_seen(endpoint.id, first, START + timedelta(hours=1))  # another worker, later
        dead_letter_seen(endpoint.id, first, START + DAY - timedelta(seconds=1))
        dead_letter_seen(other.id, made(workspace, other, START, Delivery.Status.EXHAUSTED), START)
    assert notices_sent == [(endpoint.id, notices.DEAD_LETTERS), (other.id, notices.DEAD_LETTERS)]
    assert Endpoint.objects.get(id=endpoint.id).dead_letter_notified_at == START

    mail = next(m for m in mailoutbox if "hooks.example.com" in m.subject)
    assert mail.subject == "Webhook deliveries to https://hooks.example.com/clientflow are failing"
    assert "A invoice.paid event could not be delivered after 1 attempt: HTTP 410" in mail.body
    assert "disabled automatically" in mail.body and "5 days" in mail.body
    assert secret not in mail.body and "inv_1" not in mail.body  # never the payload
    assert sorted(m.to[0] for m in mailoutbox if m.subject == mail.subject) == managers

    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_seen(endpoint.id, first, START + DAY)
    assert notices_sent[-1] == (endpoint.id, notices.DEAD_LETTERS)
    assert len(notices_sent) == 3


def test_a_batch_asks_the_database_once_whatever_its_dead_letters(settings_5_days, workspace, notices_sent):
    from django.test.utils import CaptureQueriesContext

    endpoint, _ = endpoint_at(workspace, START - DAY)
    deliveries = [made(workspace, endpoint, START, Delivery.Status.EXHAUSTED) for _ in range(3)]
    batch_endpoint = Endpoint.objects.get(id=endpoint.id)  # as a drain reads it for a batch
    with CaptureQueriesContext(connection) as queries:
        for delivery in deliveries:
            notices.dead_letter_seen(endpoint=batch_endpoint, delivery=delivery, error="HTTP 503")
    updates = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1


def test_test_events_send_no_dead_letter_email(settings_5_days, workspace, notices_sent):
    endpoint, _ = endpoint_at(workspace, START - DAY)
    delivery = services.send_test_event(endpoint=endpoint)
    dead_letter_seen(endpoint.id, delivery, START)
    assert notices_sent == []
    assert Endpoint.objects.get(id=endpoint.id).dead_letter_notified_at is None


def test_a_notice_goes_to_nobody_when_no_manager_has_an_email(workspace, mailoutbox):
    endpoint, _ = endpoint_create(workspace=workspace, url="https://hooks.example.com/x", event_types=["invoice.paid"])
    assert notices.endpoint_notice_send(endpoint_id=endpoint.id, kind=notices.DEAD_LETTERS, details={}) == 0
    assert notices.endpoint_notice_send(endpoint_id=endpoint.id + 1000, kind=notices.DEAD_LETTERS, details={}) == 0
    assert mailoutbox == []
    with pytest.raises(ValueError, match=r"Unknown notice 'spam'; expected one of dead_letters, auto_disabled\."):
        notices.endpoint_notice_send(endpoint_id=endpoint.id, kind="spam", details={})


# --- retention --------------------------------------------------------------------------

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def with_attempt(delivery: Delivery) -> Delivery:
    DeliveryAttempt.objects.create(
        delivery=delivery, number=1, started_at=delivery.created_at, duration_ms=5, outcome="success"
    )
    return delivery


@pytest.fixture
def history(workspace, owner):
    """A workspace's history, as the clock stands at NOW, with what retention must keep."""
    endpoint, _ = endpoint_at(workspace, days_ago(200))
    other, _ = endpoint_at(workspace, days_ago(200), url="https://other.example.com/hook")
    rows = {
        "succeeded_31_days_ago": with_attempt(made(workspace, endpoint, days_ago(31), "succeeded")),
        "succeeded_29_days_ago": with_attempt(made(workspace, endpoint, days_ago(29), "succeeded")),
        "cancelled_31_days_ago": made(workspace, endpoint, days_ago(31), "cancelled"),
        "dead_letter_91_days_ago": with_attempt(made(workspace, endpoint, days_ago(91), "exhausted")),
        "dead_letter_60_days_ago": with_attempt(made(workspace, endpoint, days_ago(60), "failed")),
        "pending_retry_of_an_old_event": made(workspace, endpoint, days_ago(45), "pending"),
    }
    # Replayed 10 days ago and delivered then: an ordinary succeeded delivery from then on.
    replayed = with_attempt(made(workspace, endpoint, days_ago(100), "exhausted"))
    with time_machine.travel(days_ago(10), tick=False):
        services.delivery_replay(deliveries=[replayed], actor=owner)
    Delivery.objects.filter(id=replayed.id).update(status="succeeded", completed_at=days_ago(10))
    rows["replayed_and_delivered_10_days_ago"] = replayed
    # One event, two endpoints: the old success goes, the dead letter keeps the event.
    shared = made(workspace, endpoint, days_ago(40), "succeeded")
    rows["succeeded_40_days_ago_sharing_its_event"] = shared
    rows["dead_letter_sharing_that_event"] = made(workspace, other, days_ago(40), "exhausted", event=shared.event)
    # Published while no endpoint was subscribed: no deliveries.
    events = {
        "no_deliveries_31_days_ago": event_at(workspace, days_ago(31), "task.created"),
        "no_deliveries_29_days_ago": event_at(workspace, days_ago(29), "task.created"),
    }
    return rows, events


def test_retention_deletes_exactly_what_it_should(settings, history, django_assert_max_num_queries):
    settings.WEBHOOKS_RETENTION_DAYS = 30
    settings.WEBHOOKS_DEAD_LETTER_RETENTION_DAYS = 90
    rows, events = history
    expired = ["succeeded_31_days_ago", "cancelled_31_days_ago", "dead_letter_91_days_ago"]
    expired.append("succeeded_40_days_ago_sharing_its_event")
    expired_events = {rows[name].event_id for name in expired} - {rows["dead_letter_sharing_that_event"].event_id}
    expired_events.add(events["no_deliveries_31_days_ago"].id)
    kept_deliveries = {d.id for name, d in rows.items() if name not in expired}
    kept_events = set(Event.objects.values_list("id", flat=True)) - expired_events
    replays = DeliveryReplay.objects.count()

    with time_machine.travel(NOW, tick=False):
        purged = operations.deliveries_purge(batch_size=2)  # several batches of each kind

    assert (purged.deliveries, purged.dead_letters, purged.events) == (3, 1, len(expired_events))
    assert set(Delivery.objects.values_list("id", flat=True)) == kept_deliveries
    assert set(Event.objects.values_list("id", flat=True)) == kept_events
    assert set(DeliveryAttempt.objects.values_list("delivery_id", flat=True)) == {
        rows[name].id
        for name in ("succeeded_29_days_ago", "dead_letter_60_days_ago", "replayed_and_delivered_10_days_ago")
    }
    assert DeliveryReplay.objects.count() == replays  # the replayed delivery is kept, and its record

    # What a dead letter needs stays until it expires itself, 90 days after it ended.
    with time_machine.travel(NOW + timedelta(days=51), tick=False):
        purged = operations.deliveries_purge()
    assert not Delivery.objects.filter(id=rows["dead_letter_sharing_that_event"].id).exists()
    assert not Event.objects.filter(id=rows["dead_letter_sharing_that_event"].event_id).exists()


def test_retention_periods_are_settings(settings, history):
    rows, _ = history
    settings.WEBHOOKS_RETENTION_DAYS = 45
    settings.WEBHOOKS_DEAD_LETTER_RETENTION_DAYS = 365
    with time_machine.travel(NOW, tick=False):
        purged = operations.deliveries_purge()
    assert (purged.deliveries, purged.dead_letters) == (0, 0)
    assert Delivery.objects.filter(id=rows["dead_letter_91_days_ago"].id).exists()


def test_retention_rejects_an_empty_batch(db):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        operations.deliveries_purge(batch_size=0)


def test_retention_stops_at_its_time_budget(history):
    with time_machine.travel(NOW, tick=False):
        purged = operations.deliveries_purge(budget_seconds=0)
    assert (purged.deliveries, purged.dead_letters, purged.events) == (0, 0, 0)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")
def test_retention_skips_rows_someone_else_holds_instead_of_waiting(
    transactional_db,
    workspace,
    other_connection,  # noqa: F811
):
    endpoint, _ = endpoint_at(workspace, days_ago(100))
    held = made(workspace, endpoint, days_ago(40), "succeeded")
    free = made(workspace, endpoint, days_ago(40), "succeeded")
    with other_connection.transaction():
        other_connection.execute("SELECT id FROM deliveries_delivery WHERE id = %s FOR UPDATE", [held.id])
        started = timezone.now()
        with time_machine.travel(NOW, tick=False):
            assert operations.deliveries_purge().deliveries == 1
        assert (timezone.now() - started).total_seconds() < 5
    assert list(Delivery.objects.values_list("id", flat=True)) == [held.id]
    assert not Delivery.objects.filter(id=free.id).exists()
    with time_machine.travel(NOW, tick=False):
        assert operations.deliveries_purge().deliveries == 1  # the next run takes it
    assert not Delivery.objects.exists()
