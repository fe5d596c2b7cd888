import base64
from datetime import UTC, datetime, timedelta

from deliveries.signing import (
    SigningSecrets,
    redacted,
    signature_header,
    signature_matches,
    standard_key,
    standard_signature_header,
)
from endpoints.models import Endpoint
from endpoints.services import new_secret

# A known answer computed outside this code base:
#   printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = (
    b'{"id":"evt_0123456789abcdef0123456789abcdef","type":"invoice.paid","created_at":"2026-04-26T12:00:00.000Z",'
    b'"workspace":"acme","data":{"invoice_id":"inv_42","amount":"1200.00","currency":"EUR"}}'
)
EXPECTED = "sha256=5df23b0c7e071b54d0cbd7667b9a7ef7372e6e80b321154a5a26ec12feb4ee3b"


def test_signature_matches_the_fixed_test_vector():
    assert signature_header(secret=SECRET, body=BODY) == EXPECTED


def test_signature_changes_with_one_byte_of_body_or_secret():
    assert signature_header(secret=SECRET, body=BODY.replace(b"1200", b"1201")) != EXPECTED
    assert signature_header(secret=SECRET + "x", body=BODY) != EXPECTED


def test_receiver_check_accepts_the_right_signature_only():
    assert signature_matches(secret=SECRET, body=BODY, header=EXPECTED)
    assert not signature_matches(secret=SECRET, body=BODY + b" ", header=EXPECTED)
    assert not signature_matches(secret=SECRET, body=BODY, header=EXPECTED.replace("sha256=5", "sha256=6"))


# --- Standard Webhooks --------------------------------------------------------------
# The specification's published test vector (also in the svix and standardwebhooks
# libraries' own tests): this secret, id, timestamp and body give this signature.
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standard_signature_matches_the_specifications_test_vector():
    assert standard_key(SECRET) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    header = standard_signature_header(
        keys=[standard_key(SECRET)], msg_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY
    )
    assert header == VECTOR_SIGNATURE


def test_one_signature_per_key_space_separated_newest_first():
    other = new_secret()
    header = standard_signature_header(
        keys=[standard_key(SECRET), standard_key(other)], msg_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY
    )
    first, second = header.split(" ")
    assert first == VECTOR_SIGNATURE
    assert second.startswith("v1,") and second != first


class Endpointish:
    """What SigningSecrets reads of an endpoint."""

    def __init__(self, secret, previous=None, expires_at=None):
        self.secret, self.previous_secret, self.previous_secret_expires_at = secret, previous, expires_at

    previous_secret_valid = Endpoint.previous_secret_valid


def test_headers_of_an_attempt_outside_an_overlap():
    at = datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC)
    headers = SigningSecrets.of(endpoint=Endpointish(SECRET), at=at).headers(msg_id=VECTOR_ID, body=VECTOR_BODY, at=at)
    assert headers == {
        "X-ClientFlow-Timestamp": "1614265330",
        "X-ClientFlow-Signature": signature_header(secret=SECRET, body=VECTOR_BODY),
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": VECTOR_SIGNATURE,
    }


def test_during_an_overlap_both_secrets_sign_until_it_ends_even_within_one_drain():
    new = new_secret()
    start = datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC)
    ends = start + timedelta(seconds=1)
    secrets = SigningSecrets.of(endpoint=Endpointish(new, previous=SECRET, expires_at=ends), at=start)

    during = secrets.headers(msg_id=VECTOR_ID, body=VECTOR_BODY, at=start)
    assert during["X-ClientFlow-Signature"] == signature_header(secret=new, body=VECTOR_BODY)
    assert during["X-ClientFlow-Signature-Previous"] == signature_header(secret=SECRET, body=VECTOR_BODY)
    assert during["webhook-signature"].split(" ")[1] == VECTOR_SIGNATURE

    after = secrets.headers(msg_id=VECTOR_ID, body=VECTOR_BODY, at=ends)  # the same drain, a second later
    assert "X-ClientFlow-Signature-Previous" not in after
    assert " " not in after["webhook-signature"] and after["webhook-signature"] != VECTOR_SIGNATURE


def test_an_expired_previous_secret_is_not_even_read_into_a_drain():
    at = datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC)
    current = new_secret()
    secrets = SigningSecrets.of(endpoint=Endpointish(current, previous=SECRET, expires_at=at), at=at)
    assert [s.text for s in secrets.secrets] == [current]


def test_stored_headers_keep_only_the_start_of_each_signature():
    headers = {
        "X-ClientFlow-Delivery": "d",
        "X-ClientFlow-Signature": EXPECTED,
        "X-ClientFlow-Signature-Previous": EXPECTED,
        "webhook-signature": f"{VECTOR_SIGNATURE} {VECTOR_SIGNATURE}",
        "webhook-id": VECTOR_ID,
    }
    assert redacted(headers) == {
        "X-ClientFlow-Delivery": "d",
        "X-ClientFlow-Signature": "sha256=5df23b0c…",
        "X-ClientFlow-Signature-Previous": "sha256=5df23b0c…",
        "webhook-signature": "v1,g0hM9SsE… v1,g0hM9SsE…",
        "webhook-id": VECTOR_ID,
    }
