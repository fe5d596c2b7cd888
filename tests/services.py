"""Fixtures for the real thing: a Celery worker process, Redis, PostgreSQL and HTTPS receivers.

Needs DATABASE_URL on PostgreSQL and CELERY_BROKER_URL on Redis (as `.ci/run` sets);
skipped without them locally, failed without them in CI.
"""

import contextlib
import os
import random
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import trustme
from django.conf import settings
from django.db import connection

from clientflow_webhooks.celery import app as celery_app
from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 2  # seconds per attempt in these tests, so that hanging receivers are quick
SESSION_QUEUE = f"webhooks-test-{uuid.uuid4().hex[:8]}"


def wait_for(predicate, *, timeout=30.0, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture(scope="session")
def live_services():
    """PostgreSQL and Redis, the ones production uses, or skip (fail in CI)."""
    if connection.vendor != "postgresql":
        skip_or_fail("end-to-end tests need DATABASE_URL on PostgreSQL")
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        skip_or_fail("end-to-end tests need CELERY_BROKER_URL on Redis")
    try:
        redis.Redis.from_url(broker, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis at {broker} is not reachable: {exc}")
    # One queue for this run, so a developer's own worker never takes our messages.
    celery_app.conf.task_default_queue = SESSION_QUEUE
    yield broker
    # What this run's killed workers left unacknowledged, and the queue itself.
    client = redis.Redis.from_url(broker)
    client.delete(SESSION_QUEUE, "unacked", "unacked_index", "unacked_mutex", f"_kombu.binding.{SESSION_QUEUE}")


# --- certificates ---------------------------------------------------------------


@pytest.fixture(scope="session")
def rogue_ca():
    """A CA nobody trusts."""
    return trustme.CA()


# --- the receiver ---------------------------------------------------------------


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None


class Receiver:
    """An HTTPS server on 127.0.0.1 that records every request and answers as scripted.

    `script(path, *actions)` queues answers for a path. An action is a status code, or
    ("hang", seconds) to hold the request open, or a misbehaviour: "drip" (the status
    line one byte a second), "endless" (200 and a body that never ends), "huge" (200 and
    10 MB), "close" (hang up in the middle of the headers). `flaky(path, rate)` answers
    500 at random that share of the time. Otherwise 200. `Received.status` is what the
    receiver answered (None when it did not answer with a status).
    """

    def __init__(self, ca: trustme.CA) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, deque] = defaultdict(deque)
        self._flaky: dict[str, float] = {}
        self._random = random.Random(1234)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = Received(time.monotonic(), self.path, dict(self.headers), body)
                action = receiver._record(request)
                if isinstance(action, tuple) and action[0] == "hang":
                    receiver._stop.wait(action[1])
                    self.close_connection = True
                    return
                if isinstance(action, tuple) and action[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", action[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(action, str):
                    self.close_connection = True
                    receiver._misbehave(action, self.wfile)
                    return
                reply = f"status {action}".encode()
                self.send_response(action)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # Handshakes happen in the request threads, so one stuck client blocks nobody.
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *actions) -> None:
        with self._lock:
            self._scripts[path].extend(actions)

    def flaky(self, path: str, rate: float) -> None:
        with self._lock:
            self._flaky[path] = rate

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _record(self, request: Received):
        with self._lock:
            self.requests.append(request)
            script = self._scripts[request.path]
            if script:
                action = script.popleft()
            elif self._random.random() < self._flaky.get(request.path, 0):
                action = 500
            else:
                action = 200
            if isinstance(action, tuple):
                request.status = 302 if action[0] == "redirect" else None
            else:
                request.status = action if isinstance(action, int) else (200 if action in ("endless", "huge") else None)
            return action

    def _misbehave(self, how: str, out) -> None:
        try:
            if how == "drip":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                    if self._stop.wait(1):
                        return
                    out.write(bytes([byte]))
                    out.flush()
            elif how == "endless":
                out.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                chunk = b"z" * 65536
                while not self._stop.is_set():
                    out.write(chunk)
            elif how == "huge":
                size = 10 * 1024 * 1024
                out.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                for _ in range(size // 65536):
                    out.write(b"h" * 65536)
            elif how == "close":
                out.write(b"HTTP/1.1 200 OK\r\nContent-Le")
                out.flush()
        except OSError:
            pass  # the client hung up: that is the point

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(ca):
    receiver = Receiver(ca)
    yield receiver
    receiver.close()


@pytest.fixture
def rogue_receiver(rogue_ca):
    receiver = Receiver(rogue_ca)
    yield receiver
    receiver.close()


# --- the worker -----------------------------------------------------------------


class Worker:
    """A real `celery worker` process (with embedded beat for the sweeper)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.log = self.log_dir / f"worker-{self.runs}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "clientflow_webhooks", "worker",
            "--pool", "threads", "--concurrency", "4", "--queues", SESSION_QUEUE,
            "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle",
            "--beat", "--schedule", str(self.log_dir / f"beat-{self.runs}"),
        ]  # fmt: skip
        # A session of its own, so that kill() and stop() reach the embedded beat too.
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=60, message=f"the worker to start (log: {self.log})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log.read_text()}")
        return b"ready." in self.log.read_bytes()

    def kill(self) -> None:
        """SIGKILL to every process of the worker: no clean-up, as when a machine dies."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        self._signal_group(signal.SIGKILL)  # whatever is left, beat included
        self.process.wait(timeout=10)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


@pytest.fixture
def worker_env(live_services, transactional_db, ca_file):
    db = connection.settings_dict
    auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    database_url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": live_services,
        "CELERY_TASK_DEFAULT_QUEUE": SESSION_QUEUE,
        "WEBHOOKS_CA_BUNDLE": ca_file,
        "WEBHOOKS_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8,::1/128",
        "WEBHOOKS_TIMEOUT": str(TIMEOUT),
        "WEBHOOKS_SWEEP_INTERVAL": "1",
        "WEBHOOKS_SWEEP_GRACE": "1",
        "WEBHOOKS_LEASE_MARGIN": "3",
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
    }


@pytest.fixture
def worker(worker_env, tmp_path):
    worker = Worker(worker_env, tmp_path)
    worker.start()
    yield worker
    worker.stop()
