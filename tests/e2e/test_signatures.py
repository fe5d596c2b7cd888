"""Receivers' side of the signatures, on real deliveries (a real worker, Redis, PostgreSQL
and an HTTPS receiver), checked with maintained libraries: `standardwebhooks` and the
verifier of `svix`. Replays and tampering are refused; rotation never drops a delivery."""

import json
import time
from datetime import timedelta

import pytest
import time_machine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from deliveries.models import Delivery
from deliveries.services import event_publish
from deliveries.signing import signature_matches
from endpoints.models import Endpoint
from endpoints.services import endpoint_end_overlap, endpoint_rotate_secret
from tests.conftest import example
from tests.services import Worker, wait_for

pytestmark = pytest.mark.services

VERIFIERS = [pytest.param(Webhook, id="standardwebhooks"), pytest.param(SvixWebhook, id="svix")]
TOLERANCE = 5 * 60  # seconds: what both libraries allow either way


def publish(workspace, **changes):
    return event_publish(workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", **changes))


def wait_ended(delivery, timeout=30):
    wait_for(
        lambda: Delivery.objects.get(id=delivery.id).status != Delivery.Status.PENDING,
        timeout=timeout,
        message=f"delivery {delivery.id} to end",
    )
    return Delivery.objects.get(id=delivery.id)


def verifies(verifier, secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        verifier(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def documented_verifies(secret: str, got) -> bool:
    """A receiver of the documented header: X-ClientFlow-Signature, or during a rotation
    X-ClientFlow-Signature-Previous, whichever its secret made (docs/receiving.md)."""
    headers = ("X-ClientFlow-Signature", "X-ClientFlow-Signature-Previous")
    return any(
        signature_matches(secret=secret, body=got.body, header=got.headers[h]) for h in headers if h in got.headers
    )


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_real_delivery_verifies_within_the_tolerance_and_a_replay_or_a_changed_byte_does_not(
    verifier, worker, receiver, workspace, make_endpoint
):
    _endpoint, secret = make_endpoint(url=receiver.url("/std"))
    event = publish(workspace)
    wait_ended(event.deliveries.get())
    [got] = receiver.received("/std")
    sent_at = int(got.headers["webhook-timestamp"])
    assert got.headers["webhook-id"] == event.id
    assert abs(sent_at - time.time()) < 30
    assert got.headers["X-ClientFlow-Timestamp"] == str(sent_at)
    assert [part[:3] for part in got.headers["webhook-signature"].split(" ")] == ["v1,"]

    assert verifies(verifier, secret, got.body, got.headers)
    for clock in (sent_at - TOLERANCE + 10, sent_at + TOLERANCE - 10):  # clocks a little apart
        with time_machine.travel(clock, tick=False):
            assert verifies(verifier, secret, got.body, got.headers)

    # Captured and replayed six minutes later: too old.
    with time_machine.travel(sent_at + 6 * 60, tick=False):
        assert not verifies(verifier, secret, got.body, got.headers)
        # ... and a fresh timestamp does not match the signature.
        refreshed = {**got.headers, "webhook-timestamp": str(int(time.time()))}
        assert not verifies(verifier, secret, got.body, refreshed)
    # One byte of the body changed; another id; the wrong secret.
    changed = got.body.replace(b'"amount":125000', b'"amount":125001')
    assert changed != got.body and len(changed) == len(got.body)
    assert not verifies(verifier, secret, changed, got.headers)
    assert not verifies(verifier, secret, got.body, {**got.headers, "webhook-id": "evt_other"})
    _other, other_secret = make_endpoint(url=receiver.url("/other"))
    assert not verifies(verifier, other_secret, got.body, got.headers)
    # The documented header still verifies as documented.
    assert signature_matches(secret=secret, body=got.body, header=got.headers["X-ClientFlow-Signature"])


def test_webhook_id_is_the_event_id_on_every_attempt_and_endpoint_and_each_attempt_is_timestamped(
    worker, receiver, workspace, make_endpoint
):
    _first, first_secret = make_endpoint(url=receiver.url("/first"))
    make_endpoint(url=receiver.url("/second"))
    receiver.script("/first", 503, 200)
    event = publish(workspace)
    for delivery in event.deliveries.all():
        wait_ended(delivery)

    requests = receiver.received()
    assert len(requests) == 3
    assert {r.headers["webhook-id"] for r in requests} == {event.id}
    assert len({r.headers["X-ClientFlow-Delivery"] for r in requests}) == 2  # one per endpoint
    failed, retried = receiver.received("/first")
    assert int(retried.headers["webhook-timestamp"]) > int(failed.headers["webhook-timestamp"])
    assert retried.headers["webhook-signature"] != failed.headers["webhook-signature"]
    assert all(verifies(Webhook, first_secret, r.body, r.headers) for r in (failed, retried))


def test_during_rotation_receivers_on_either_secret_verify_until_the_overlap_ends(
    worker_env, tmp_path, receiver, workspace, make_endpoint
):
    # Retries 3 s apart leave room to rotate between an attempt and its retry.
    worker = Worker({**worker_env, "WEBHOOKS_RETRY_DELAYS": "3,3,3"}, tmp_path)
    worker.start()
    try:
        endpoint, old = make_endpoint(url=receiver.url("/rotate"))
        receiver.script("/rotate", 503)
        before = publish(workspace, invoice_id="inv_before").deliveries.get()
        wait_for(lambda: before.attempts.count() == 1, message="the first attempt")

        new = endpoint_rotate_secret(endpoint=endpoint, overlap=timedelta(seconds=8))
        ends_at = Endpoint.objects.get(id=endpoint.id).previous_secret_expires_at
        assert wait_ended(before).status == Delivery.Status.SUCCEEDED
        first, retried = receiver.received("/rotate")
        assert retried.at - first.at < 8  # the retry came during the overlap

        # Before the rotation: the old secret only.
        assert verifies(Webhook, old, first.body, first.headers) and documented_verifies(old, first)
        assert not verifies(Webhook, new, first.body, first.headers) and not documented_verifies(new, first)
        # From the moment of rotation, during the overlap: either secret, with either scheme.
        for secret in (old, new):
            assert verifies(Webhook, secret, retried.body, retried.headers)
            assert verifies(SvixWebhook, secret, retried.body, retried.headers)
            assert documented_verifies(secret, retried)
        assert signature_matches(secret=new, body=retried.body, header=retried.headers["X-ClientFlow-Signature"])

        # After the overlap: the new secret only.
        time.sleep(max(0.0, (ends_at.timestamp() - time.time()) + 0.5))
        after = publish(workspace, invoice_id="inv_after").deliveries.get()
        wait_ended(after)
        [late] = receiver.received("/rotate")[2:]
        assert json.loads(late.body)["data"]["invoice_id"] == "inv_after"
        assert "X-ClientFlow-Signature-Previous" not in late.headers
        assert not verifies(Webhook, old, late.body, late.headers) and not documented_verifies(old, late)
        assert verifies(Webhook, new, late.body, late.headers) and documented_verifies(new, late)

        # A 24-hour overlap ended early: from then on the replaced secret no longer verifies.
        newest = endpoint_rotate_secret(endpoint=endpoint)
        wait_ended(publish(workspace, invoice_id="inv_overlap").deliveries.get())
        during = receiver.received("/rotate")[3]
        assert verifies(Webhook, new, during.body, during.headers) and verifies(
            Webhook, newest, during.body, during.headers
        )
        assert endpoint_end_overlap(endpoint=endpoint)
        wait_ended(publish(workspace, invoice_id="inv_ended").deliveries.get())
        ended = receiver.received("/rotate")[4]
        assert not verifies(Webhook, new, ended.body, ended.headers) and not documented_verifies(new, ended)
        assert verifies(Webhook, newest, ended.body, ended.headers) and documented_verifies(newest, ended)
    finally:
        worker.stop()
