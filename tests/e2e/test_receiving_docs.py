"""docs/receiving.md cannot drift from the product: every code example in it runs here
(Python with this interpreter, JavaScript with `node`) against a real delivery made by a
real worker to an HTTPS receiver during a secret rotation, and every event type's
example body is the catalogue's."""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from deliveries.models import Delivery
from deliveries.services import event_publish
from endpoints import event_types as catalogue
from endpoints.services import endpoint_rotate_secret, new_secret
from tests import docs
from tests.conftest import example
from tests.services import wait_for

# Our integration guide's function, which the docs must keep exactly.
DOCUMENTED_NODE_FUNCTION = """
import crypto from "crypto";
function verifyWebhook(rawBody, signatureHeader, secret) {
const provided = signatureHeader.replace(/^sha256=/, "");
const expected = crypto
.createHmac("sha256", secret)
.update(rawBody)
.digest("hex");
return crypto.timingSafeEqual(
Buffer.from(provided, "hex"),
Buffer.from(expected, "hex"),
);
}
"""

# Each example, how the tests call it, and what it must say about each case below:
# True (accepted), False (refused) or "error" (it raises).
CASES = ["new secret", "old secret", "one byte changed", "replayed 6 min later", "another secret", "forged"]
EXAMPLES = {
    "python-standardwebhooks": (["python-standardwebhooks"], "parse_webhook(body, headers, secret) is not None"),
    "python-verify": (["python-verify"], "verify_webhook(body, headers, secret)"),
    "node-verify-standard": (["node-verify-standard"], "verifyStandardWebhook(body, headers, secret)"),
    "node-verify": (["node-verify"], 'verifyWebhook(body, headers["x-clientflow-signature"], secret)'),
    "node-verify-either": (["node-verify", "node-verify-either"], "verifyClientFlowDelivery(body, headers, secret)"),
    "python-verify-documented": (
        ["python-verify-documented"],
        'verify_clientflow_signature(body, headers["x-clientflow-signature"], secret)',
    ),
}
STANDARD = [True, True, False, False, False, False]
EXPECTED = {
    "python-standardwebhooks": STANDARD,
    "python-verify": STANDARD,
    "node-verify-standard": STANDARD,
    # The body-only signature: X-ClientFlow-Signature is the new secret's, and a replay
    # verifies, which is why the docs recommend the Standard Webhooks headers.
    "node-verify": [True, False, False, True, False, "error"],
    "node-verify-either": [True, True, False, True, False, False],
    "python-verify-documented": [True, False, False, True, False, False],
}


def test_every_example_in_the_docs_is_run_here():
    assert set(docs.examples()) == {*EXAMPLES, "python-receiver"}


def test_the_documented_node_function_is_kept_exactly():
    def words(code):
        return code.split()

    assert words(docs.example("node-verify")) == words(DOCUMENTED_NODE_FUNCTION)


def test_every_event_type_is_documented_with_its_catalogue_example():
    documented = docs.payloads()
    assert list(documented) == [t.name for t in (*catalogue.SUBSCRIBABLE, catalogue.TEST_EVENT)]
    for name, body in documented.items():
        assert list(body) == ["id", "type", "created_at", "workspace", "data"]
        assert body["type"] == name
        assert body["data"] == catalogue.BY_NAME[name].example
        assert catalogue.data_errors(event_type=name, data=body["data"]) == []


@pytest.fixture
def delivery_during_rotation(worker, receiver, workspace, make_endpoint):
    """A real delivery, captured by the receiver, made during a rotation's overlap:
    (request, old secret, new secret)."""
    endpoint, old = make_endpoint(url=receiver.url("/docs"))
    new = endpoint_rotate_secret(endpoint=endpoint)
    event = event_publish(workspace=workspace, event_type="invoice.paid", data=example("invoice.paid"))
    delivery = event.deliveries.get()
    wait_for(lambda: Delivery.objects.get(id=delivery.id).status == "succeeded", message="the delivery")
    [got] = receiver.received("/docs")
    return got, old, new


def cases_from(got, old: str, new: str) -> list[dict]:
    """The cases of CASES, from one real delivery. Header names as Node.js gives them."""
    headers = {name.lower(): value for name, value in got.headers.items()}
    changed = got.body.replace(b'"amount":125000', b'"amount":125001')
    assert changed != got.body
    forged = {
        **headers,
        "x-clientflow-signature": "sha256=é" + headers["x-clientflow-signature"][8:],
        "x-clientflow-signature-previous": "sha256=zz",
        "webhook-signature": "v1," + base64.b64encode(os.urandom(32)).decode(),
    }

    def case(body=got.body, secret=new, **extra):
        return {"body": base64.b64encode(body).decode(), "headers": headers, "secret": secret, **extra}

    return [
        case(),
        case(secret=old),
        case(body=changed),
        case(now=int(headers["webhook-timestamp"]) + 6 * 60),
        case(secret=new_secret()),
        {**case(), "headers": forged},
    ]


@pytest.mark.services
def test_every_verification_example_accepts_a_real_delivery_and_refuses_the_rest(delivery_during_rotation, tmp_path):
    got, old, new = delivery_during_rotation
    cases = cases_from(got, old, new)
    results = {}
    for name, (blocks, call) in EXAMPLES.items():
        said = docs.run(blocks, call, cases, tmp_path)
        results[name] = ["error" if isinstance(r, str) else r for r in said]
    assert results == EXPECTED, {name: dict(zip(CASES, said, strict=True)) for name, said in results.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.services
def test_the_receiver_example_answers_at_once_processes_once_and_refuses_forgeries(delivery_during_rotation, tmp_path):
    got, _old, new = delivery_during_rotation
    port = free_port()
    program = docs.example("python-verify") + "\n" + docs.example("python-receiver")
    environment = {**os.environ, "CLIENTFLOW_WEBHOOK_SECRET": new, "PORT": str(port)}
    server = subprocess.Popen(
        [sys.executable, "-c", program], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=20, message="the receiver")
        headers = {name: value for name, value in got.headers.items() if name.lower() not in {"host", "content-length"}}
        started = time.monotonic()
        assert post(port, got.body, headers) == 204
        assert time.monotonic() - started < 2
        assert post(port, got.body, headers) == 204  # a duplicate: answered, not processed again
        assert post(port, got.body + b" ", headers) == 401
        assert post(port, got.body, {**headers, "webhook-signature": "v1,AAAA"}) == 401
        time.sleep(0.5)
    finally:
        server.terminate()
        out, err = server.communicate(timeout=10)
    event = json.loads(got.body)
    assert out.splitlines() == [f"processing {event['id']} invoice.paid"], err
