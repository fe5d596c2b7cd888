"""Metrics: the reason classes of real attempts, and /metrics read before and after
deliveries made in this process against a real HTTPS receiver (tests/e2e has the same with
a worker process)."""

import ipaddress
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from deliveries import metrics, policy, services, transport
from deliveries.models import Delivery
from tests.test_operations import closed_port

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


# --- reason classes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "error", "blocked", "reason"),
    [
        (200, "", False, "http_2xx"),
        (204, "", False, "http_2xx"),
        (302, "", False, "http_3xx"),
        (410, "", False, "http_4xx"),
        (429, "", False, "http_4xx"),
        (503, "", False, "http_5xx"),
        (101, "", False, "http_1xx"),
        (799, "", False, "error"),
        (None, "timed out after 10s", False, "timeout"),
        (None, "connect timed out: Connection to x timed out", False, "timeout"),
        (None, "TLS error: certificate verify failed", False, "tls"),
        (None, "connection error: [Errno 111] Connection refused", False, "connection"),
        (None, "connection error: address not allowed: loopback", True, "blocked"),
        (None, "request error: something odd", False, "error"),
    ],
)
def test_reason_class(status_code, error, blocked, reason):
    assert policy.reason_class(status_code=status_code, error=error, blocked=blocked) == reason


def attempt(url, ca_file, *, timeout=1.0, allowed=LOOPBACK):
    result = transport.post(
        url=url, body=b"{}", headers={}, timeout=timeout, ca_file=ca_file, body_limit=4096, allowed_private=allowed
    )
    return policy.reason_class(status_code=result.status_code, error=result.error, blocked=result.blocked)


def test_reason_classes_of_real_failures(receiver, rogue_receiver, ca_file):
    """What the transport reports for each kind of failure lands in its class."""
    receiver.script("/gone", 410)
    receiver.script("/down", 503)
    receiver.script("/hang", ("hang", 3))
    assert attempt(receiver.url("/ok"), ca_file) == "http_2xx"
    assert attempt(receiver.url("/gone"), ca_file) == "http_4xx"
    assert attempt(receiver.url("/down"), ca_file) == "http_5xx"
    assert attempt(receiver.url("/hang"), ca_file, timeout=0.5) == "timeout"
    assert attempt(rogue_receiver.url("/x"), ca_file) == "tls"
    assert attempt(f"https://127.0.0.1:{closed_port()}/x", ca_file) == "connection"
    assert attempt(receiver.url("/ok"), ca_file, allowed=()) == "blocked"


# --- /metrics before and after ----------------------------------------------------------


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as Prometheus reads it: {(sample name, labels): value}."""
    response = Client(REMOTE_ADDR="10.0.0.1").get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def scraper(settings):
    settings.METRICS_NETWORKS = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.fixture
def real_receiver_settings(settings, ca_file, monkeypatch):
    settings.WEBHOOKS_CA_BUNDLE = ca_file
    settings.WEBHOOKS_RETRY_DELAYS = [0, 0, 0]
    # Wake-ups would go to the broker; here the test drains by hand.
    monkeypatch.setattr(services, "endpoints_wake", lambda **kwargs: None)


def invoice_paid(**changes):
    """invoice.paid data in the shape the event-type catalogue documents."""
    client = {"id": "cli_1", "name": "Northwind"}
    return {
        "invoice_id": "inv_1",
        "number": "2026-000001",
        "amount": 125000,
        "currency": "EUR",
        "client": client,
        "paid_at": "2026-04-26T12:00:00.000Z",
        "method": "bank_transfer",
        **changes,
    }


def publish(workspace, **changes):
    return services.event_publish(workspace=workspace, event_type="invoice.paid", data=invoice_paid(**changes))


def publish_and_drain(workspace, endpoint, **changes):
    delivery = publish(workspace, **changes).deliveries.get()
    while Delivery.objects.get(id=delivery.id).status == Delivery.Status.PENDING:
        services.endpoint_drain(endpoint_id=endpoint.id)
    return Delivery.objects.get(id=delivery.id)


def test_metrics_change_as_deliveries_happen(scraper, real_receiver_settings, receiver, workspace, make_endpoint):
    # The tests run in multiprocess mode, as production does (tests/prometheus_dir.py).
    assert metrics.multiprocess_directory()
    endpoint, _ = make_endpoint(url=receiver.url("/hook"))
    before = scrape()

    assert publish_and_drain(workspace, endpoint).status == Delivery.Status.SUCCEEDED
    receiver.script("/hook", 503, 200)
    assert publish_and_drain(workspace, endpoint).status == Delivery.Status.SUCCEEDED
    receiver.script("/hook", 410)
    assert publish_and_drain(workspace, endpoint).status == Delivery.Status.FAILED
    after = scrape()

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("webhooks_attempts_total", outcome="success", reason="http_2xx") == 2
    assert grew("webhooks_attempts_total", outcome="transient", reason="http_5xx") == 1
    assert grew("webhooks_attempts_total", outcome="permanent", reason="http_4xx") == 1
    assert grew("webhooks_attempt_duration_seconds_count", outcome="success") == 2
    assert grew("webhooks_attempt_duration_seconds_bucket", outcome="success", le="+Inf") == 2
    assert grew("webhooks_attempt_duration_seconds_sum", outcome="success") > 0
    assert grew("webhooks_deliveries_ended_total", status="succeeded") == 2
    assert grew("webhooks_deliveries_ended_total", status="failed") == 1
    assert grew("webhooks_dead_letters") == 1
    assert value(after, "webhooks_database_figures_up") == 1


def test_pending_deliveries_and_lag_come_from_the_database(scraper, workspace, make_endpoint, monkeypatch):
    monkeypatch.setattr(services, "endpoints_wake", lambda **kwargs: None)
    make_endpoint()
    now = timezone.now()
    assert value(scrape(), "webhooks_lag_seconds") == 0  # nothing due
    deliveries = [publish(workspace).deliveries.get() for _ in range(4)]
    # Due 90 s ago and waiting; due 5 min ago but being sent (leased); due in an hour.
    Delivery.objects.filter(id=deliveries[0].id).update(next_attempt_at=now - timedelta(seconds=90))
    Delivery.objects.filter(id=deliveries[1].id).update(
        next_attempt_at=now - timedelta(minutes=5), locked_until=now + timedelta(seconds=30)
    )
    Delivery.objects.filter(id=deliveries[2].id).update(next_attempt_at=now + timedelta(hours=1))
    Delivery.objects.filter(id=deliveries[3].id).update(status=Delivery.Status.EXHAUSTED, completed_at=now)

    samples = scrape()
    assert 90 <= value(samples, "webhooks_lag_seconds") < 120
    assert value(samples, "webhooks_deliveries_pending") == 3
    assert value(samples, "webhooks_dead_letters") == 1


def test_metrics_still_answer_when_the_database_does_not(scraper, monkeypatch, db):
    from django.db import DatabaseError

    from deliveries import selectors

    def broken(**kwargs):
        raise DatabaseError("the database is gone")

    monkeypatch.setattr(selectors, "pipeline_figures", broken)
    samples = scrape()
    assert value(samples, "webhooks_database_figures_up") == 0
    assert ("webhooks_dead_letters", ()) not in samples
    assert ("webhooks_attempts_total", (("outcome", "success"), ("reason", "http_2xx"))) in samples
