"""The receivers: a fast HTTPS server answering 204 that logs each request's arrival, and
a listener for "hanging" endpoints that accepts connections and never answers."""

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import trustme

NGINX = "/usr/sbin/nginx"
# One line per request: arrival time (seconds, ms resolution), delivery id, status.
LOG_FORMAT = "$msec $http_x_clientflow_delivery $status"


@dataclass(frozen=True)
class Arrival:
    at: float
    delivery: str
    status: int


def read_log(path: Path) -> list[Arrival]:
    arrivals = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            arrivals.append(Arrival(at=float(parts[0]), delivery=parts[1], status=int(parts[2])))
    return arrivals


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_listening(port: int, *, alive: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the receiver exited while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the receiver did not listen on port {port} within {timeout:g}s")


class Receiver(Protocol):
    kind: str
    version: str
    port: int
    log_path: Path

    def url(self, path: str) -> str: ...

    def stop(self) -> None: ...


def _write_cert(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = directory / "server.pem", directory / "server.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


class NginxReceiver:
    """Debian's nginx under a prefix of its own (config, pid, temp paths, logs), in the
    foreground as our child: nothing of it outlives the bench."""

    kind = "nginx"

    def __init__(self, *, ca: trustme.CA, directory: Path, binary: str = NGINX) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # nginx's worker runs as nobody when we are root
        self.directory = directory
        self.port = free_port()
        self.log_path = directory / "access.log"
        chain, key = _write_cert(ca, directory)
        temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        config = directory / "nginx.conf"
        config.write_text(
            f"""
daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    log_format bench '{LOG_FORMAT}';
    # Unbuffered: each line is written as its request ends, so the log is complete
    # whenever the bench reads it.
    access_log {self.log_path} bench;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 1m;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {chain};
        ssl_certificate_key {key};
        location / {{ return 204; }}
    }}
}}
"""
        )
        found = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stderr.strip()
        self.version = found.removeprefix("nginx version: ")
        # -e: the error log before the config is read, instead of /var/log/nginx.
        self.process = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_listening(self.port, alive=lambda: self.process.poll() is None)
        except RuntimeError as exc:
            self.stop()
            errors = (directory / "error.log").read_text() if (directory / "error.log").exists() else ""
            raise RuntimeError(f"nginx did not start: {exc}\n{errors}") from None

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


class PythonReceiver:
    """The stand-in without nginx: a threaded HTTPS server with keep-alive, answering 204
    and logging like nginx. Slower, so the output says which receiver was used."""

    kind = "python"
    version = f"http.server (Python {'.'.join(map(str, sys.version_info[:3]))})"

    def __init__(self, *, ca: trustme.CA, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.log_path = directory / "access.log"
        log = self.log_path.open("a", buffering=1)
        lock = threading.Lock()
        self._log = log

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()
                self.wfile.flush()
                line = f"{time.time():.3f} {self.headers.get('X-ClientFlow-Delivery', '-')} 204\n"
                with lock:
                    log.write(line)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        chain, key = _write_cert(ca, directory)
        context.load_cert_chain(str(chain), str(key))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 1024
        # Handshakes in the request threads, so that one slow client blocks nobody.
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="receiver")
        self._thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._log.close()


def start_receiver(*, kind: str, ca: trustme.CA, directory: Path) -> Receiver:
    """nginx when asked for or when installed ("auto"), otherwise the Python server."""
    binary = NGINX if os.access(NGINX, os.X_OK) else shutil.which("nginx")
    if kind == "nginx" or (kind == "auto" and binary):
        if not binary:
            raise RuntimeError("nginx is not installed (apt-get install nginx, or --receiver python)")
        return NginxReceiver(ca=ca, directory=directory / "nginx", binary=binary)
    return PythonReceiver(ca=ca, directory=directory / "python-receiver")


class HangingListener:
    """Accepts TCP connections on 127.0.0.1 and holds them open without a byte in reply:
    the TLS handshake of an attempt waits until the worker's deadline ends it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="hanging-listener")
        self._thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        self.socket.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                conn = None
            except OSError:
                return
            if conn is not None:
                conn.setblocking(False)
                self._held.append(conn)
                self.accepted += 1
            self._prune()

    def _prune(self) -> None:
        """Close what the workers gave up on, so that a long run holds no dead sockets."""
        alive = []
        for conn in self._held:
            try:
                gone = conn.recv(65536) == b""  # a ClientHello is read and ignored
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                conn.close()
            else:
                alive.append(conn)
        self._held = alive

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.socket.close()
        for conn in self._held:
            conn.close()
