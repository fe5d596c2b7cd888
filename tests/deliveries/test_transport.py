"""The transport against real TLS sockets on 127.0.0.1 that misbehave on purpose."""

import ipaddress
import socket
import ssl
import threading
import time

import pytest

from deliveries import transport

DEADLINE = 1.0


class RawServer:
    """Accepts TLS connections, reads one request, then runs `behave(conn)`."""

    def __init__(self, ca, behave):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.behave = behave
        self.stop = threading.Event()
        self.connections = 0
        self.heads: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw):
        if getattr(self.behave, "raw", False):  # talks before (or instead of) TLS
            with raw:
                self.behave(raw, self)
            return
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                while True:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    head, _, rest = data.partition(b"\r\n\r\n")
                    self.heads.append(head)
                    lengths = [
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ]
                    length = int(lengths[0]) if lengths else 0
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    if not self.behave(conn, self):
                        return
        except OSError:
            pass

    def url(self):
        return f"https://127.0.0.1:{self.port}/hook"

    def close(self):
        self.stop.set()
        self.listener.close()


@pytest.fixture
def serve(ca):
    servers = []

    def serve(behave):
        server = RawServer(ca, behave)
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.close()


LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def post(url, ca_file, timeout=DEADLINE, allowed=LOOPBACK):
    return transport.post(
        url=url,
        body=b'{"id":"evt_1"}',
        headers={"X-Test": "1"},
        timeout=timeout,
        ca_file=ca_file,
        body_limit=4096,
        allowed_private=allowed,
    )


def drip(conn, payload, stop, interval=0.05):
    for byte in payload:
        if stop.is_set():
            return
        conn.sendall(bytes([byte]))
        time.sleep(interval)


def test_a_response_whose_headers_drip_ends_at_the_deadline(serve, ca_file):
    def behave(conn, server):
        drip(conn, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000 + b"\r\n\r\n", server.stop)

    result = post(serve(behave).url(), ca_file)
    assert result.error == f"timed out after {DEADLINE:g}s"
    assert result.status_code is None
    assert DEADLINE * 1000 - 50 <= result.duration_ms <= DEADLINE * 1000 + 700


def test_a_body_that_drips_for_ever_ends_at_the_deadline(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\n")
        drip(conn, b"x" * 100_000, server.stop, interval=0.2)

    result = post(serve(behave).url(), ca_file)
    assert result.error == f"timed out after {DEADLINE:g}s"
    assert result.duration_ms <= DEADLINE * 1000 + 700


def test_an_endless_fast_body_is_read_only_to_4_kib(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"y" * 65536
        while not server.stop.is_set():
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    result = post(serve(behave).url(), ca_file, timeout=5)
    assert result.error == ""
    assert result.status_code == 503
    assert result.response_body == "y" * 4096
    assert result.duration_ms < 2000


def test_redirects_are_not_followed(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: https://169.254.169.254/\r\nContent-Length: 0\r\n\r\n")
        return True

    result = post(serve(behave).url(), ca_file)
    assert result.status_code == 302
    assert result.response_headers["Location"] == "https://169.254.169.254/"
    assert result.error == ""


def test_untrusted_certificate_is_a_tls_error(serve, tmp_path):
    def behave(conn, server):  # never reached: the handshake fails
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    server = serve(behave)
    result = post(server.url(), ca_file=None)  # only the default store: the test CA is unknown
    assert result.error.startswith("TLS error:")
    assert "certificate verify failed" in result.error


def test_connections_are_reused_between_attempts(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    server = serve(behave)
    results = [post(server.url(), ca_file) for _ in range(3)]
    assert [r.status_code for r in results] == [204, 204, 204]
    assert server.connections == 1


def test_request_headers_are_recorded_as_sent(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True

    result = post(serve(behave).url(), ca_file)
    assert result.request_headers["X-Test"] == "1"
    assert result.request_headers["Content-Length"] == "14"
    assert result.response_body == "ok"


def test_a_tls_handshake_that_drips_ends_at_the_deadline(serve, ca_file):
    def behave(raw, server):
        # A TLS record header announcing 16 KiB, then one byte at a time: the handshake
        # must end with the attempt, however slowly the bytes come.
        drip(raw, b"\x16\x03\x03\x40\x00" + b"\x02" * 16384, server.stop)

    behave.raw = True
    result = post(serve(behave).url(), ca_file)
    assert result.error == f"timed out after {DEADLINE:g}s"
    assert result.duration_ms <= DEADLINE * 1000 + 700


def test_a_connect_that_never_completes_ends_at_the_deadline(ca_file):
    # A listener that never accepts: once its backlog is full, new connects hang.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        result = post(f"https://127.0.0.1:{port}/hook", ca_file)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert result.status_code is None
    assert "timed out" in result.error
    assert result.duration_ms <= DEADLINE * 1000 + 700


def test_a_slow_dns_answer_ends_at_the_deadline(monkeypatch, ca_file):
    real = socket.getaddrinfo

    def slow(host, *args, **kwargs):
        if host == "slow.invalid":
            time.sleep(3)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    result = post("https://slow.invalid/hook", ca_file)
    assert "timed out" in result.error
    assert result.duration_ms <= DEADLINE * 1000 + 700


def test_cookies_from_one_receiver_are_never_sent_back(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=tenant-a-secret; Path=/\r\nContent-Length: 0\r\n\r\n")
        return True

    server = serve(behave)
    post(server.url(), ca_file)
    post(server.url().replace("/hook", "/other"), ca_file)
    assert len(server.heads) == 2
    assert b"cookie" not in server.heads[1].lower()


def test_a_nul_byte_in_the_response_is_stored_as_text(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\na\x00b\x00c")
        return True

    result = post(serve(behave).url(), ca_file)
    assert result.response_body == "a\ufffdb\ufffdc"


def test_a_loopback_receiver_is_refused_without_the_allowance(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        return True

    server = serve(behave)
    result = post(server.url(), ca_file, allowed=())
    assert result.blocked
    assert result.status_code is None
    assert "address not allowed: 127.0.0.1 is a loopback address" in result.error
    assert server.connections == 0  # never connected


def test_the_address_connected_to_is_judged_not_the_one_saved(monkeypatch, ca_file):
    # DNS rebinding: the host resolved to a public address when saved, now to metadata.
    real = socket.getaddrinfo

    def rebound(host, port, *args, **kwargs):
        if host == "rebind.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    result = post("https://rebind.example.com/hook", ca_file)
    assert result.blocked
    assert "169.254.169.254 is a link-local address" in result.error


def test_a_connection_closed_in_the_middle_of_the_headers_is_no_answer(serve, ca_file):
    def behave(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")

    result = post(serve(behave).url(), ca_file)
    assert result.status_code is None
    assert result.error.startswith("connection error")
