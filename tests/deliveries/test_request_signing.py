"""What a drain puts in each attempt's headers during a rotation's overlap, what it keeps
of them, and that it reads the secrets once per drain. (The receivers' side, with real
deliveries and the maintained libraries, is in tests/e2e/test_signatures.py.)"""

from datetime import timedelta

import pytest
import responses
from standardwebhooks.webhooks import Webhook

from deliveries import services
from deliveries.models import DeliveryAttempt
from deliveries.signing import signature_matches
from endpoints import crypto
from endpoints.services import endpoint_end_overlap, endpoint_rotate_secret
from tests.conftest import example

URL = "https://hooks.example.com/clientflow"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr(services, "endpoints_wake", lambda **kwargs: None)


def publish(workspace):
    return services.event_publish(workspace=workspace, event_type="invoice.paid", data=example("invoice.paid"))


@responses.activate
def test_during_an_overlap_every_attempt_is_signed_with_both_secrets(workspace, make_endpoint):
    endpoint, old = make_endpoint(url=URL)
    new = endpoint_rotate_secret(endpoint=endpoint, overlap=timedelta(hours=1))
    responses.post(URL, status=200)
    publish(workspace)

    services.endpoint_drain(endpoint_id=endpoint.id)

    sent = responses.calls[0].request
    assert signature_matches(secret=new, body=sent.body, header=sent.headers["X-ClientFlow-Signature"])
    assert signature_matches(secret=old, body=sent.body, header=sent.headers["X-ClientFlow-Signature-Previous"])
    assert len(sent.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(sent.body, dict(sent.headers))
    stored = DeliveryAttempt.objects.get().request_headers
    assert stored["X-ClientFlow-Signature-Previous"] == sent.headers["X-ClientFlow-Signature-Previous"][:15] + "…"
    assert [len(part) for part in stored["webhook-signature"].split(" ")] == [12, 12]
    assert stored["webhook-id"] == sent.headers["webhook-id"]


@responses.activate
def test_after_the_overlap_ends_only_the_new_secret_signs(workspace, make_endpoint):
    endpoint, _ = make_endpoint(url=URL)
    endpoint_rotate_secret(endpoint=endpoint)
    endpoint_end_overlap(endpoint=endpoint)
    responses.post(URL, status=200)
    publish(workspace)

    services.endpoint_drain(endpoint_id=endpoint.id)

    sent = responses.calls[0].request
    assert "X-ClientFlow-Signature-Previous" not in sent.headers
    assert " " not in sent.headers["webhook-signature"]


@responses.activate
def test_a_drain_decrypts_the_secrets_once_however_many_attempts_it_makes(workspace, make_endpoint, monkeypatch):
    endpoint, _ = make_endpoint(url=URL)
    endpoint_rotate_secret(endpoint=endpoint)
    responses.post(URL, status=200)
    for _ in range(5):
        publish(workspace)
    decrypted = []
    real = crypto.decrypt
    monkeypatch.setattr(crypto, "decrypt", lambda token: decrypted.append(1) or real(token))

    assert services.endpoint_drain(endpoint_id=endpoint.id) == 5

    assert len(decrypted) == 2  # the secret and the previous one
    assert len({call.request.headers["webhook-id"] for call in responses.calls}) == 5
