"""Retry policy: which responses are retried and when. Pure functions, no I/O."""

from collections.abc import Sequence

from .models import DeliveryAttempt

Outcome = DeliveryAttempt.Outcome

# 4xx that mean "try again later" rather than "never".
RETRYABLE_4XX = frozenset({408, 429})


def classify(*, status_code: int | None) -> Outcome:
    """The outcome of one attempt; ``None`` means no response (timeout, connection, TLS)."""
    if status_code is None:
        return Outcome.TRANSIENT
    if 200 <= status_code < 300:
        return Outcome.SUCCESS
    if 400 <= status_code < 500 and status_code not in RETRYABLE_4XX:
        return Outcome.PERMANENT
    # 1xx, 3xx (redirects are never followed), 408, 429 and 5xx.
    return Outcome.TRANSIENT


def retry_delay(*, failed_attempts: int, delays: Sequence[float]) -> float | None:
    """Seconds to wait after the `failed_attempts`-th transient failure, or ``None`` when
    retries are used up (the delivery is then exhausted)."""
    if failed_attempts < 1:
        raise ValueError("failed_attempts starts at 1")
    if failed_attempts > len(delays):
        return None
    return delays[failed_attempts - 1]


def reason_class(*, status_code: int | None, error: str, blocked: bool = False) -> str:
    """Why an attempt went as it did, in a few classes (a metrics label): ``http_2xx`` …
    ``http_5xx`` for an answer, else ``timeout``, ``tls``, ``connection`` (refused, reset,
    DNS), ``blocked`` (an address deliveries may not reach) or ``error``. Reads what the
    transport reports (`transport.post`, `transport.describe_error`)."""
    if blocked:
        return "blocked"
    if status_code is not None:
        return f"http_{status_code // 100}xx" if 100 <= status_code < 600 else "error"
    if error.startswith(("timed out", "connect timed out", "read timed out")):
        return "timeout"
    if error.startswith("TLS error"):
        return "tls"
    if error.startswith("connection error"):
        return "connection"
    return "error"
