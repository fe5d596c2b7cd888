"""The documented signature: ``X-ClientFlow-Signature: sha256=<hex HMAC-SHA256 of the body>``."""

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="


def signature_header(*, secret: str, body: bytes) -> str:
    """The header value for `body`, keyed with the endpoint's secret string as UTF-8."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_PREFIX}{digest}"


def signature_matches(*, secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(signature_header(secret=secret, body=body), header)
