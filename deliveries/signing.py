"""How deliveries are signed: two schemes side by side, one per attempt.

- The documented one: ``X-ClientFlow-Signature: sha256=<hex HMAC-SHA256 of the body>``,
  keyed with the endpoint's secret string as UTF-8. Kept exactly as it is.
- Standard Webhooks (https://www.standardwebhooks.com/): ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "<id>.<timestamp>.<body>">``, keyed with the base64-decoded part of the ``whsec_``
  secret. The timestamp lets receivers refuse a captured request replayed later, and
  there is one signature per valid secret, so rotation needs no moment of failures.
"""

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from endpoints.models import Endpoint

SIGNATURE_PREFIX = "sha256="
STANDARD_VERSION = "v1"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
# Headers that hold signatures, and the scheme each signature starts with.
SIGNATURE_HEADERS = {
    "X-ClientFlow-Signature": SIGNATURE_PREFIX,
    "X-ClientFlow-Signature-Previous": SIGNATURE_PREFIX,
    "webhook-signature": f"{STANDARD_VERSION},",
}


def signature_header(*, secret: str, body: bytes) -> str:
    """The X-ClientFlow-Signature value for `body`, keyed with the secret string as UTF-8."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_PREFIX}{digest}"


def signature_matches(*, secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(signature_header(secret=secret, body=body), header)


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks HMAC key of a ``whsec_`` secret: the base64 after the prefix."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def standard_signature_header(*, keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value: ``v1,<base64 HMAC>`` for each key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        f"{STANDARD_VERSION},{base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode('ascii')}"
        for key in keys
    )


@dataclass(frozen=True)
class Secret:
    text: str  # the whsec_ string: X-ClientFlow-Signature's key
    key: bytes  # its decoded part: webhook-signature's key
    expires_at: datetime | None = None


@dataclass(frozen=True)
class SigningSecrets:
    """An endpoint's secrets, newest first, decrypted and decoded once for a whole drain;
    each attempt signs with those still valid at its own time."""

    secrets: tuple[Secret, ...]

    @classmethod
    def of(cls, *, endpoint: "Endpoint", at: datetime) -> "SigningSecrets":
        """The secrets of `endpoint` valid at `at` (the current one, and the previous one
        during an overlap, with its expiry)."""
        secrets = [Secret(endpoint.secret, standard_key(endpoint.secret))]
        if (previous := endpoint.previous_secret) and endpoint.previous_secret_valid(at=at):
            secrets.append(Secret(previous, standard_key(previous), endpoint.previous_secret_expires_at))
        return cls(tuple(secrets))

    def valid(self, *, at: datetime) -> list[Secret]:
        return [s for s in self.secrets if s.expires_at is None or at < s.expires_at]

    def headers(self, *, msg_id: str, body: bytes, at: datetime) -> dict[str, str]:
        """The signature headers of an attempt made at `at`: the documented ones with the
        newest secret (and X-ClientFlow-Signature-Previous with the previous one during an
        overlap), and the Standard Webhooks ones with every valid secret."""
        valid = self.valid(at=at)
        timestamp = int(at.timestamp())
        headers = {
            "X-ClientFlow-Timestamp": str(timestamp),
            "X-ClientFlow-Signature": signature_header(secret=valid[0].text, body=body),
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature_header(
                keys=[s.key for s in valid], msg_id=msg_id, timestamp=timestamp, body=body
            ),
        }
        if len(valid) > 1:
            headers["X-ClientFlow-Signature-Previous"] = signature_header(secret=valid[1].text, body=body)
        return headers


def redacted(headers: dict[str, str]) -> dict[str, str]:
    """The headers with each signature cut to its scheme and 8 characters, so that nobody
    who reads stored attempts (members, support, a dump) holds a request they could replay."""
    kept = dict(headers)
    for name, scheme in SIGNATURE_HEADERS.items():
        if value := kept.get(name):
            kept[name] = " ".join(f"{part[: len(scheme) + 8]}…" for part in value.split(" "))
    return kept
