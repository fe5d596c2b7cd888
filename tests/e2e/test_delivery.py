"""Deliveries end to end: a real worker process, Redis, PostgreSQL and HTTPS receivers."""

import base64
import itertools
import json
import re
import socket
import threading
import time
from uuid import UUID

import pytest
from django.db import connection, transaction

from deliveries.models import Delivery
from deliveries.services import event_publish, events_publish
from endpoints.services import endpoint_create, endpoint_disable, endpoint_enable
from tests import docs
from tests.conftest import example
from tests.services import TIMEOUT, Worker, wait_for

pytestmark = pytest.mark.services


def python_verifier():
    """The documented X-ClientFlow-Signature check in Python, from docs/receiving.md."""
    namespace: dict = {}
    exec(docs.example("python-verify-documented"), namespace)
    return namespace["verify_clientflow_signature"]


def node_verifier(cases: list[tuple[bytes, str, str]], tmp_path) -> list[bool]:
    """The documented Node.js function, from docs/receiving.md, run by `node`."""
    runs = [
        {"body": base64.b64encode(body).decode(), "headers": {"x-clientflow-signature": header}, "secret": secret}
        for body, header, secret in cases
    ]
    return docs.run(["node-verify"], 'verifyWebhook(body, headers["x-clientflow-signature"], secret)', runs, tmp_path)


def wait_ended(delivery: Delivery, timeout: float = 30) -> Delivery:
    def ended():
        delivery.refresh_from_db()
        return delivery.status != Delivery.Status.PENDING

    wait_for(ended, timeout=timeout, message=f"delivery {delivery.id} to end")
    return delivery


@pytest.fixture
def make(workspace):
    def make(url, event_types=("invoice.paid",)):
        return endpoint_create(workspace=workspace, url=url, event_types=event_types)

    return make


def publish(workspace, event_type="invoice.paid", data=None):
    return event_publish(workspace=workspace, event_type=event_type, data=data or example(event_type))


def test_published_event_arrives_once_with_the_documented_body_headers_and_signature(
    worker, receiver, workspace, make, tmp_path
):
    _endpoint, secret = make(receiver.url("/hook"))
    data = example("invoice.paid", client={"id": "cli_7", "name": "Zoë"})
    event = publish(workspace, data=data)
    delivery = wait_ended(event.deliveries.get())
    assert delivery.status == Delivery.Status.SUCCEEDED
    time.sleep(1)  # room for a duplicate to show up, if there were one

    [got] = receiver.received("/hook")
    body = json.loads(got.body)
    assert got.body == event.payload.encode()
    assert list(body) == ["id", "type", "created_at", "workspace", "data"]
    assert body["id"] == event.id
    assert body["type"] == "invoice.paid"
    assert body["workspace"] == "acme"
    assert body["data"] == data
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["created_at"])
    assert b", " not in got.body and b": " not in got.body  # compact
    assert got.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"ClientFlow-Webhooks/\d+\.\d+\.\d+", got.headers["User-Agent"])
    assert got.headers["X-ClientFlow-Event"] == "invoice.paid"
    assert got.headers["X-ClientFlow-Delivery"] == str(delivery.id)
    signature = got.headers["X-ClientFlow-Signature"]
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", signature)

    verify = python_verifier()
    assert verify(got.body, signature, secret)
    assert not verify(got.body.replace(b"125000", b"125001"), signature, secret)
    assert not verify(got.body, signature, secret[:-2] + "xx")
    assert not verify(got.body, "sha256=é" + signature[8:], secret)  # refused, not an exception
    tampered = got.body.replace(b"125000", b"125001")
    assert node_verifier([(got.body, signature, secret), (tampered, signature, secret)], tmp_path) == [True, False]

    [attempt] = delivery.attempts.all()
    assert (attempt.number, attempt.outcome, attempt.response_status) == (1, "success", 200)
    assert attempt.response_body == "status 200"
    # Kept cut short: a stored signature must not let anyone replay the request.
    assert attempt.request_headers["X-ClientFlow-Signature"] == signature[:15] + "…"


def test_500_four_times_is_retried_after_1_2_4_seconds_then_exhausted(worker, receiver, workspace, make):
    make(receiver.url("/down"))
    receiver.script("/down", 500, 500, 500, 500)
    delivery = wait_ended(publish(workspace).deliveries.get(), timeout=40)

    assert delivery.status == Delivery.Status.EXHAUSTED
    assert delivery.attempt_count == 4
    assert delivery.last_status_code == 500
    assert [a.outcome for a in delivery.attempts.all()] == ["transient"] * 4
    times = [r.at for r in receiver.received("/down")]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, expected in zip(gaps, [1, 2, 4], strict=True):
        assert expected * 0.9 <= gap <= expected + 2.5, gaps
    headers = [r.headers["X-ClientFlow-Delivery"] for r in receiver.received("/down")]
    assert headers == [str(delivery.id)] * 4
    bodies = {r.body for r in receiver.received("/down")}
    assert len(bodies) == 1  # byte-identical on every attempt


@pytest.mark.parametrize("first", [500, 408, 429])
def test_transient_failure_then_200_succeeds_on_the_second_attempt(worker, receiver, workspace, make, first):
    make(receiver.url("/flaky"))
    receiver.script("/flaky", first, 200)
    delivery = wait_ended(publish(workspace).deliveries.get())
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert [(a.number, a.response_status, a.outcome) for a in delivery.attempts.all()] == [
        (1, first, "transient"),
        (2, 200, "success"),
    ]
    assert len(receiver.received("/flaky")) == 2


def test_4xx_other_than_408_and_429_gets_one_attempt_and_fails(worker, receiver, workspace, make):
    codes = [400, 401, 404, 410, 422]
    for code in codes:
        make(receiver.url(f"/{code}"))
        receiver.script(f"/{code}", code, 200)  # a retry would get 200: there must be none
    event = publish(workspace)
    for delivery in event.deliveries.select_related("endpoint"):
        wait_ended(delivery)
        code = int(delivery.endpoint.url.rsplit("/", 1)[1])
        assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("failed", 1, code)
    time.sleep(1.5)  # past the first retry delay
    assert sorted(int(r.path[1:]) for r in receiver.received()) == codes


def test_receiver_that_never_answers_times_out_and_is_retried(worker, receiver, workspace, make):
    make(receiver.url("/hang"))
    receiver.script("/hang", ("hang", 30), ("hang", 30))
    delivery = publish(workspace).deliveries.get()

    wait_for(lambda: delivery.attempts.count() >= 2, timeout=30, message="two attempts")
    first, second = list(delivery.attempts.all())[:2]
    for attempt in (first, second):
        assert attempt.outcome == "transient"
        assert attempt.response_status is None
        assert attempt.error == f"timed out after {TIMEOUT}s"
        assert TIMEOUT * 1000 - 100 <= attempt.duration_ms <= TIMEOUT * 1000 + 1500


def test_closed_port_is_retried_with_a_clear_error(worker, workspace, make):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make(f"https://127.0.0.1:{port}/hook")
    delivery = publish(workspace).deliveries.get()

    wait_for(lambda: delivery.attempts.count() >= 2, timeout=20, message="two attempts")
    for attempt in delivery.attempts.all()[:2]:
        assert attempt.outcome == "transient"
        assert attempt.error.startswith("connection error:")
        assert "refused" in attempt.error.lower()


def test_untrusted_certificate_fails_the_attempt_whatever_the_environment_trusts(
    worker_env, tmp_path, rogue_ca, rogue_receiver, receiver, workspace, make
):
    # If the worker let REQUESTS_CA_BUNDLE override its explicit verification, the rogue
    # receiver would be trusted and the real one refused.
    rogue_file = tmp_path / "rogue.pem"
    rogue_ca.cert_pem.write_to_path(str(rogue_file))
    rogue_env = {name: str(rogue_file) for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")}
    worker = Worker({**worker_env, **rogue_env}, tmp_path)
    worker.start()
    try:
        make(rogue_receiver.url("/rogue"))
        make(receiver.url("/trusted"))
        event = publish(workspace)
        rogue = event.deliveries.get(endpoint__url__endswith="/rogue")
        trusted = wait_ended(event.deliveries.get(endpoint__url__endswith="/trusted"))
        wait_for(lambda: rogue.attempts.exists(), message="the rogue attempt")
    finally:
        worker.stop()

    assert trusted.status == Delivery.Status.SUCCEEDED
    attempt = rogue.attempts.first()
    assert attempt.outcome == "transient"
    assert attempt.error.startswith("TLS error:")
    assert "certificate verify failed" in attempt.error
    assert rogue_receiver.received() == []  # no request body ever reached it


def test_publish_in_a_rolled_back_transaction_delivers_nothing(worker, receiver, workspace, make):
    make(receiver.url("/hook"))
    with pytest.raises(RuntimeError), transaction.atomic():
        publish(workspace, data=example("invoice.paid", invoice_id="inv_rolledback"))
        raise RuntimeError("the caller's transaction fails")
    sentinel = publish(workspace, data=example("invoice.paid", invoice_id="inv_committed"))
    wait_ended(sentinel.deliveries.get())
    time.sleep(1)
    assert [json.loads(r.body)["data"]["invoice_id"] for r in receiver.received()] == ["inv_committed"]


def test_only_subscribed_enabled_endpoints_receive_an_event(worker, receiver, workspace, make):
    make(receiver.url("/paid"), ["invoice.paid"])
    make(receiver.url("/paid-and-tasks"), ["invoice.paid", "task.created"])
    make(receiver.url("/tasks"), ["task.created"])
    disabled, _ = make(receiver.url("/disabled"), ["invoice.paid"])
    endpoint_disable(endpoint=disabled)

    event = publish(workspace)
    for delivery in event.deliveries.all():
        wait_ended(delivery)
    sentinel = publish(workspace, event_type="task.created")
    for delivery in sentinel.deliveries.all():
        wait_ended(delivery)

    by_path = {}
    for r in receiver.received():
        by_path.setdefault(r.path, set()).add(json.loads(r.body)["type"])
    assert by_path == {
        "/paid": {"invoice.paid"},
        "/paid-and-tasks": {"invoice.paid", "task.created"},
        "/tasks": {"task.created"},
    }
    assert len(receiver.received()) == 4


def test_disabled_endpoint_receives_nothing_and_after_enable_the_same_secret_signs(worker, receiver, workspace, make):
    endpoint, secret = make(receiver.url("/toggle"))
    sentinel_endpoint, _ = make(receiver.url("/sentinel"))
    endpoint_disable(endpoint=endpoint)

    event = publish(workspace, data=example("invoice.paid", invoice_id="inv_1"))
    assert list(event.deliveries.values_list("endpoint_id", flat=True)) == [sentinel_endpoint.id]
    wait_ended(event.deliveries.get())
    assert receiver.received("/toggle") == []

    endpoint_enable(endpoint=endpoint)
    later = publish(workspace, data=example("invoice.paid", invoice_id="inv_2"))
    wait_ended(later.deliveries.get(endpoint=endpoint))
    [got] = receiver.received("/toggle")
    assert json.loads(got.body)["data"]["invoice_id"] == "inv_2"
    assert python_verifier()(got.body, got.headers["X-ClientFlow-Signature"], secret)


def test_delivery_pending_when_the_worker_is_killed_is_sent_by_the_next_worker(
    worker_env, tmp_path, receiver, workspace, make
):
    # A 3 s retry leaves ample time to kill the worker while it holds the retry.
    worker = Worker({**worker_env, "WEBHOOKS_RETRY_DELAYS": "3,3,3"}, tmp_path)
    worker.start()
    try:
        make(receiver.url("/recover"))
        receiver.script("/recover", 500)
        delivery = publish(workspace).deliveries.get()
        wait_for(lambda: delivery.attempts.count() == 1, message="the first attempt")
        worker.kill()
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.PENDING
        assert len(receiver.received("/recover")) == 1

        worker.start()  # a new worker process; beat's sweeper finds the due delivery
        wait_ended(delivery, timeout=45)
    finally:
        worker.stop()
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert delivery.attempt_count == 2
    assert [r.headers["X-ClientFlow-Delivery"] for r in receiver.received("/recover")] == [str(delivery.id)] * 2


def test_workers_claiming_at_once_never_claim_the_same_delivery(
    live_services, transactional_db, workspace, make, settings
):
    from deliveries.services import _deliveries_claim

    settings.WEBHOOKS_BATCH_SIZE = 10
    endpoint, _ = make("https://hooks.example.com/in")
    for _ in range(5):
        events_publish(
            workspace=workspace,
            event_type="invoice.paid",
            data_list=[example("invoice.paid", invoice_id=f"inv_{n}") for n in range(40)],
        )
        barrier = threading.Barrier(4)
        claims: list[list[str]] = []

        def claim(barrier=barrier, claims=claims):
            barrier.wait()
            try:
                claims.append([str(d.id) for d in _deliveries_claim(endpoint=endpoint)[1]])
            finally:
                connection.close()

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        claimed = [i for batch in claims for i in batch]
        assert claimed and len(claimed) == len(set(claimed))  # SKIP LOCKED: no delivery twice
        assert all(len(batch) <= 10 for batch in claims)
        counts = dict(Delivery.objects.filter(status="pending").values_list("id", "attempt_count"))
        assert {counts[UUID(i)] for i in claimed} == {1}
        Delivery.objects.filter(status="pending").update(status="cancelled")
