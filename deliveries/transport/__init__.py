"""The HTTP transport: one POST, one total deadline, certificates always verified.

`post` is all the rest of the code base uses; `deadline` and `connection` hold the
machinery (see their docstrings).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
import urllib3
from django.utils import timezone

from .connection import BlockedAddressError, adapter, allowed_networks
from .deadline import Deadline


@dataclass
class AttemptResult:
    started_at: datetime
    duration_ms: int
    request_headers: dict[str, str]
    status_code: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    error: str = ""
    # The SSRF guard refused every address: a permanent failure, not a network blip.
    blocked: bool = False


def post(
    *,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    ca_file: str | None,
    body_limit: int,
    allowed_private: tuple[Any, ...] = (),
) -> AttemptResult:
    """POST `body` to `url`, never following redirects, within `timeout` seconds in all
    (DNS, connect, TLS, request and response).

    Returns what happened; network, TLS and timeout errors are reported in ``error``
    rather than raised.
    """
    http = adapter(ca_file)
    # Prepared and sent without a Session: no cookies, auth, proxies or redirects to merge.
    prepared = requests.Request("POST", url, data=body, headers={"Accept-Encoding": "identity", **headers}).prepare()
    result = AttemptResult(started_at=timezone.now(), duration_ms=0, request_headers=dict(prepared.headers))
    start = time.monotonic()
    allowed_networks(allowed_private)
    timed_out = False
    with Deadline(timeout) as deadline:
        try:
            response = http.send(prepared, timeout=(deadline.remaining(), deadline.remaining()), stream=True)
            try:
                if _headers_cut_off(response):
                    raise requests.ConnectionError("the connection closed in the middle of the response headers")
                result.status_code = response.status_code
                result.response_headers = _bounded_headers(response.headers)
                result.response_body = _text(_read_limited(response, body_limit))
            finally:
                response.close()
        except (requests.RequestException, OSError, urllib3.exceptions.HTTPError) as exc:
            result.error = describe_error(exc)
            result.blocked = _caused_by(exc, BlockedAddressError)
            # Every per-operation timeout is set to what is left of the deadline, so any
            # timeout means the deadline was reached, whichever clock noticed first.
            timed_out = _caused_by(exc, (requests.Timeout, TimeoutError))
        expired = deadline.finish() or timed_out
    if expired:
        # A socket shut down by the deadline can look like a clean end of the response,
        # so whatever was parsed before it is not to be trusted: the attempt timed out.
        result.status_code, result.response_headers, result.response_body = None, {}, ""
        result.error = f"timed out after {timeout:g}s"
    result.duration_ms = round((time.monotonic() - start) * 1000)
    return result


def _headers_cut_off(response: requests.Response) -> bool:
    """http.client takes end-of-stream inside the headers for their end; the email parser
    under it notes the missing blank line as a defect. Such an answer is no answer."""
    message = getattr(getattr(response.raw, "_original_response", None), "msg", None)
    return any(type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in getattr(message, "defects", ()))


def _caused_by(exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        inner = getattr(seen, "reason", None)
        if isinstance(inner, BaseException):
            seen = inner
        elif seen.args and isinstance(seen.args[0], BaseException):
            seen = seen.args[0]
        else:
            seen = seen.__cause__
    return False


MAX_HEADERS = 50
MAX_HEADER_VALUE = 1024


def _bounded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """What is kept of a receiver's headers: at most 50, each value at most 1 KiB."""
    return {_text(k)[:256]: _text(v)[:MAX_HEADER_VALUE] for k, v in list(headers.items())[:MAX_HEADERS]}


def _text(value: str) -> str:
    """What a receiver sent, storable as text anywhere (PostgreSQL refuses NUL)."""
    return value.replace("\x00", "\ufffd")


def _read_limited(response: requests.Response, limit: int) -> str:
    """At most `limit` bytes of the body; the rest is never read."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=min(limit, 4096) or 1):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit].decode("utf-8", errors="replace")


def describe_error(exc: BaseException) -> str:
    """A short, human reason for a failed request, without the library's wrapping."""
    if isinstance(exc, requests.exceptions.SSLError):
        kind = "TLS error"
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        kind = "connect timed out"
    elif isinstance(exc, requests.exceptions.ReadTimeout):
        kind = "read timed out"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        kind = "connection error"
    else:
        kind = "request error"
    reason: BaseException = exc
    # Unwrap requests → urllib3 MaxRetryError → the underlying cause.
    while True:
        inner = getattr(reason, "reason", None)
        if isinstance(inner, BaseException):
            reason = inner
            continue
        if reason.args and isinstance(reason.args[0], BaseException):
            reason = reason.args[0]
            continue
        break
    detail = str(reason)
    # urllib3 prefixes the connection ("<… object at 0x…>: " or "HTTPSConnection(host=…, port=…): ").
    detail = re.sub(r"^(<[^>]*>|_?HTTPS?Connection\([^)]*\)): ", "", detail)
    return f"{kind}: {detail}" if detail else kind
