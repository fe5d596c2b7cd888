import base64

import pytest
from django.core.exceptions import ValidationError

from endpoints.models import Endpoint, EndpointEventType
from endpoints.services import endpoint_disable, endpoint_enable


def test_endpoint_create_returns_a_whsec_secret_of_32_random_bytes(make_endpoint):
    endpoint, secret = make_endpoint(event_types=["invoice.paid", "task.created"], description="Billing")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert endpoint.secret == secret
    assert endpoint.enabled
    assert endpoint.event_types == ["invoice.paid", "task.created"]
    assert endpoint.description == "Billing"


def test_each_endpoint_gets_its_own_secret(make_endpoint):
    _, first = make_endpoint()
    _, second = make_endpoint()
    assert first != second


@pytest.mark.parametrize("url", ["http://hooks.example.com/in", "ftp://hooks.example.com/in", "HTTP://x.example.com"])
def test_non_https_url_is_rejected_with_https_is_required(make_endpoint, url):
    with pytest.raises(ValidationError) as info:
        make_endpoint(url=url)
    assert info.value.message_dict == {"url": ["HTTPS is required."]}
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    "url", ["not a url", "https://", "https://exa mple.com/", "", "https://" + "a" * 2050 + ".com"]
)
def test_unparseable_url_is_rejected_on_the_url_field(make_endpoint, url):
    with pytest.raises(ValidationError) as info:
        make_endpoint(url=url)
    assert list(info.value.message_dict) == ["url"]
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    ("event_types", "message"),
    [
        ([], "Choose at least one event type."),
        (["invoice.paid", "invoice.lost"], "Unknown event type: invoice.lost."),
        (["webhook.test"], "webhook.test is sent only by Send Test Event and cannot be chosen."),
    ],
)
def test_bad_event_types_are_rejected_and_nothing_is_written(make_endpoint, event_types, message):
    with pytest.raises(ValidationError) as info:
        make_endpoint(event_types=event_types)
    assert info.value.message_dict == {"event_types": [message]}
    assert not Endpoint.objects.exists()
    assert not EndpointEventType.objects.exists()


def test_all_errors_are_reported_at_once(make_endpoint):
    with pytest.raises(ValidationError) as info:
        make_endpoint(url="http://x.example.com", event_types=[], description="d" * 501)
    assert set(info.value.message_dict) == {"url", "event_types", "description"}


def test_disable_and_enable_keep_the_secret(make_endpoint):
    endpoint, secret = make_endpoint()
    endpoint_disable(endpoint=endpoint)
    endpoint_disable(endpoint=endpoint)  # twice is harmless
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.secret == secret
    endpoint_enable(endpoint=endpoint)
    endpoint.refresh_from_db()
    assert endpoint.enabled
    assert endpoint.secret == secret


def test_a_workspace_has_at_most_the_configured_number_of_endpoints(make_endpoint, settings):
    settings.WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE = 3
    for n in range(3):
        make_endpoint(url=f"https://h{n}.example.com/")
    with pytest.raises(ValidationError, match="at most 3 endpoints"):
        make_endpoint(url="https://h4.example.com/")
    assert Endpoint.objects.count() == 3


def test_an_update_from_a_stale_copy_never_brings_back_a_rotated_secret(make_endpoint):
    from endpoints.services import endpoint_rotate_secret, endpoint_update

    endpoint, _ = make_endpoint()
    stale = Endpoint.objects.get(id=endpoint.id)
    new = endpoint_rotate_secret(endpoint=endpoint)
    endpoint_update(endpoint=stale, description="changed elsewhere")
    assert Endpoint.objects.get(id=endpoint.id).secret == new
