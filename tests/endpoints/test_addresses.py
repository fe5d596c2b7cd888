import ipaddress
import socket

import pytest
from django.core.exceptions import ValidationError

from endpoints.addresses import refusal
from endpoints.models import Endpoint


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "private"),  # Python counts 240/4 among the private networks
        ("255.255.255.255", "private"),
        ("64:ff9b::a00:1", "NAT64"),
        ("2002:a00:1::1", "6to4"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "private"),  # documentation range (TEST-NET-1)
    ],
)
def test_non_public_addresses_are_refused(address, why):
    reason = refusal(address)
    assert reason is not None and why in reason, reason


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"])
def test_public_addresses_are_allowed(address):
    assert refusal(address) is None


def test_the_allowance_lets_loopback_through_and_nothing_else():
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    assert refusal("127.0.0.1", loopback) is None
    assert refusal("::ffff:127.0.0.1", loopback) is None
    assert refusal("10.0.0.1", loopback) is not None


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5:8443/in",
        "https://[::ffff:192.168.0.1]/x",
        "https://localhost/hook",
    ],
)
def test_saving_an_endpoint_on_a_refused_address_is_a_url_error(make_endpoint, settings, url):
    settings.WEBHOOKS_ALLOWED_PRIVATE_NETWORKS = []
    with pytest.raises(ValidationError) as info:
        make_endpoint(url=url)
    [message] = info.value.message_dict["url"]
    assert message.startswith("This address is not allowed:")
    assert not Endpoint.objects.exists()


def test_a_host_resolving_to_a_private_address_is_refused_on_save(make_endpoint, settings, monkeypatch):
    settings.WEBHOOKS_ALLOWED_PRIVATE_NETWORKS = []
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "internal.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443))]  # fmt: skip
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(ValidationError, match=r"10\.0\.0\.7 is a private address"):
        make_endpoint(url="https://internal.example.com/hook")
