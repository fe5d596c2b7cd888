"""Which network addresses an endpoint may reach: public ones only (SSRF guard).

Checked when an endpoint is saved (every address its host resolves to) and again by the
transport for the address each attempt actually connects to, so a DNS answer that
changes later (DNS rebinding) is refused too.
"""

import functools
import ipaddress
import socket
from collections.abc import Iterable

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges Python's ipaddress does not flag, or flags only in newer releases.
_EXTRA_BLOCKED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("100.64.0.0/10", "a carrier-grade NAT (CGNAT) address"),
        ("192.0.0.0/24", "an IETF protocol assignment"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("64:ff9b::/96", "a NAT64 address"),
        ("64:ff9b:1::/48", "a NAT64 address"),
        ("2002::/16", "a 6to4 address"),
        ("2001::/32", "a Teredo address"),
        ("2001:20::/28", "an ORCHIDv2 address"),
        ("5f00::/16", "an IPv6 segment-routing address"),
        ("3fff::/20", "a documentation address"),
        ("fec0::/10", "a site-local address"),
    )
)


@functools.cache
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def allowed_private_networks() -> tuple[Network, ...]:
    """WEBHOOKS_ALLOWED_PRIVATE_NETWORKS: exceptions for development and the tests."""
    return _networks(tuple(settings.WEBHOOKS_ALLOWED_PRIVATE_NETWORKS))


def refusal(address: str, allowed: Iterable[Network] = ()) -> str | None:
    """Why `address` may not be reached, or None when it may."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip in net for net in allowed):
        return None
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata lives there)"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_unspecified:
        return f"{ip} is an unspecified address"
    for net, reason in _EXTRA_BLOCKED:
        if ip.version == net.version and ip in net:
            return f"{ip} is {reason}"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_reserved or not ip.is_global:
        return f"{ip} is a reserved address"
    return None


def host_refusal(host: str, port: int) -> str | None:
    """Why the host may not be reached, judging every address it resolves to now.

    A host that does not resolve is not refused here: its addresses are judged at
    each attempt."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return None
    allowed = allowed_private_networks()
    for info in infos:
        reason = refusal(info[4][0], allowed)
        if reason:
            return reason
    return None
