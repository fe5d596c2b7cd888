"""Connections for deliveries: every phase under the attempt's deadline, TLS always
verified against a trust store chosen here (never the process environment), no cookies."""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import os
import socket
import ssl
import threading
from typing import Any

import certifi
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from endpoints.addresses import refusal

from . import deadline as deadlines

_local = threading.local()
# DNS lookups block with no timeout of their own; they run here so an attempt can stop
# waiting for one at its deadline.
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="webhooks-dns")


def _resolve(host: str, port: int, deadline: deadlines.Deadline) -> list[tuple[Any, ...]]:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        future = _resolver.submit(socket.getaddrinfo, host, port, allowed_gai_family(), socket.SOCK_STREAM)
        try:
            return future.result(timeout=deadline.remaining())
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"DNS lookup of {host} timed out") from None
    return socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)


class BlockedAddressError(NewConnectionError):
    """Every address of the host is one deliveries may not reach."""


def allowed_networks(networks: tuple[Any, ...]) -> None:
    """The private networks this thread's attempts may reach (WEBHOOKS_ALLOWED_PRIVATE_NETWORKS)."""
    _local.allowed_networks = networks


class _DeadlineConnectionMixin:
    """Connects within the deadline, only to addresses the SSRF guard allows, and
    registers the connection with the deadline, new or reused."""

    deadline_handle: socket.socket | None = None
    deadline: deadlines.Deadline | None = None

    def _new_conn(self) -> socket.socket:
        deadline = deadlines.current()
        if deadline is None:
            raise RuntimeError("deliveries connect only inside an attempt's Deadline")
        host = self._dns_host.strip("[]")  # type: ignore[attr-defined]
        try:
            addresses = _resolve(host, self.port, deadline)  # type: ignore[attr-defined]
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[attr-defined,arg-type]
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, str(exc)) from exc
        error: OSError | None = None
        refusals: list[str] = []
        for family, kind, proto, _, address in addresses:
            # Judged on the address about to be connected to, not on what the host
            # resolved to when the endpoint was saved.
            reason = refusal(address[0], getattr(_local, "allowed_networks", ()))
            if reason:
                refusals.append(reason)
                continue
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():  # type: ignore[attr-defined]
                    sock.setsockopt(*option)
                # Each address gets what is left of the deadline, not a fresh timeout.
                sock.settimeout(deadline.remaining())
                sock.connect(address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            self.deadline_handle = sock.dup()
            deadline.watch(self)  # from here the TLS handshake is covered too
            return sock
        if error is None and refusals:
            raise BlockedAddressError(self, f"address not allowed: {refusals[0]}")  # type: ignore[arg-type]
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from error  # type: ignore[attr-defined]
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> Any:
        deadline = deadlines.current()
        if deadline is not None and self.deadline_handle is not None:
            deadline.watch(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def close(self) -> None:
        if self.deadline is not None:
            self.deadline.unwatch(self)
        handle, self.deadline_handle = self.deadline_handle, None
        if handle is not None:
            handle.close()
        super().close()  # type: ignore[misc]


class _HTTPConnection(_DeadlineConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


@functools.cache
def ssl_context(extra_ca_file: str | None) -> ssl.SSLContext:
    """The system trust store (OpenSSL's compiled-in location, not SSL_CERT_FILE from the
    environment), or certifi's where there is none, plus `extra_ca_file` if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    paths = ssl.get_default_verify_paths()
    if paths.openssl_cafile and os.path.isfile(paths.openssl_cafile):
        context.load_verify_locations(cafile=paths.openssl_cafile)
    if paths.openssl_capath and os.path.isdir(paths.openssl_capath):
        context.load_verify_locations(capath=paths.openssl_capath)
    if not context.cert_store_stats()["x509_ca"] and not (paths.openssl_capath and os.path.isdir(paths.openssl_capath)):
        context.load_verify_locations(cafile=certifi.where())
    if extra_ca_file:
        context.load_verify_locations(cafile=extra_ca_file)
    return context


class DeliveryAdapter(HTTPAdapter):
    """Verifies every certificate with `context`, whatever `verify` or the environment say."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[no-untyped-def]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, None)
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        pool_kwargs["ssl_context"] = self._context
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert) -> None:  # type: ignore[no-untyped-def]
        conn.cert_reqs = "CERT_REQUIRED"  # the context holds what is trusted


def adapter(extra_ca_file: str | None) -> DeliveryAdapter:
    """One adapter per thread and trust store: its pools reuse connections to a receiver.
    Requests go through it without a Session, so no cookie set by one workspace's
    receiver can reach another's, and nothing comes from the environment (proxies,
    .netrc, REQUESTS_CA_BUNDLE)."""
    adapters: dict[str | None, DeliveryAdapter] = _local.__dict__.setdefault("adapters", {})
    current = adapters.get(extra_ca_file)
    if current is None:
        current = adapters[extra_ca_file] = DeliveryAdapter(ssl_context(extra_ca_file))
    return current
