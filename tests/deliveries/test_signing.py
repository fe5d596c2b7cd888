from deliveries.signing import signature_header, signature_matches

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
