"""The HTTP transport: one POST with one total deadline, certificate checks always on.

``requests`` only knows per-operation timeouts, so a receiver that drips its response
one byte at a time could hold an attempt for ever. Each attempt therefore arms a
timer that shuts the connection's socket down when the deadline passes; the blocked
read then fails at once and the attempt is recorded as timed out.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import certifi
import requests
import urllib3
from django.utils import timezone
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

_local = threading.local()


class _Deadline:
    """Shuts down the socket registered with it once `seconds` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        _local.deadline = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        _local.deadline = None
        with self._lock:
            self._sock = None

    def remaining(self) -> float:
        return max(0.001, self.expires_at - time.monotonic())

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):  # already closed: nothing left to interrupt
            self._sock.shutdown(socket.SHUT_RDWR)


class _DeadlineConnectionMixin:
    """Registers the connection's socket with the attempt's deadline, new or reused."""

    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._watch()

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._watch()
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def _watch(self) -> None:
        deadline = getattr(_local, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)


class _HTTPConnection(_DeadlineConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}


def _session() -> requests.Session:
    """One session per thread, so connections to a receiver are reused."""
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        # Ignore REQUESTS_CA_BUNDLE, proxies and .netrc from the environment: what is
        # trusted is decided here, explicitly, on every request.
        session.trust_env = False
        adapter = DeadlineAdapter(max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        _local.session = session
    return session


@functools.cache
def ca_bundle(extra: str | None) -> str:
    """The CA file to verify receivers with: the default store, plus `extra` if given."""
    default = certifi.where()
    if not extra:
        return default
    content = Path(default).read_bytes() + b"\n" + Path(extra).read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"clientflow-webhooks-ca-{digest}.pem"
    if not path.exists():
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
    return str(path)


@dataclass
class AttemptResult:
    started_at: datetime
    duration_ms: int
    request_headers: dict[str, str]
    status_code: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    error: str = ""


def post(
    *, url: str, body: bytes, headers: dict[str, str], timeout: float, ca_file: str | None, body_limit: int
) -> AttemptResult:
    """POST `body` to `url`, never following redirects, within `timeout` seconds in all.

    Returns what happened; network, TLS and timeout errors are reported in ``error``
    rather than raised.
    """
    session = _session()
    prepared = session.prepare_request(
        requests.Request("POST", url, data=body, headers={"Accept-Encoding": "identity", **headers})
    )
    started_at = timezone.now()
    start = time.monotonic()
    result = AttemptResult(started_at=started_at, duration_ms=0, request_headers=dict(prepared.headers))
    with _Deadline(timeout) as deadline:
        try:
            response = session.send(
                prepared,
                timeout=(deadline.remaining(), deadline.remaining()),
                verify=ca_bundle(ca_file),
                allow_redirects=False,
                stream=True,
            )
            try:
                result.status_code = response.status_code
                result.response_headers = dict(response.headers)
                result.response_body = _read_limited(response, body_limit)
            finally:
                response.close()
        except (requests.RequestException, OSError, urllib3.exceptions.HTTPError) as exc:
            result.error = describe_error(exc)
    if deadline.expired:
        # A socket shut down by the deadline can look like a clean end of the response,
        # so whatever was parsed before it is not to be trusted: the attempt timed out.
        result.status_code, result.response_headers, result.response_body = None, {}, ""
        result.error = f"timed out after {timeout:g}s"
    result.duration_ms = round((time.monotonic() - start) * 1000)
    return result


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
    # urllib3 prefixes "<connection object at 0x…>: "; drop it.
    if ">: " in detail:
        detail = detail.split(">: ", 1)[1]
    return f"{kind}: {detail}" if detail else kind
