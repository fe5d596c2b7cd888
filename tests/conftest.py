import copy
import os

import pytest
import trustme
from django.contrib.auth import get_user_model

from clientflow_webhooks.models import Membership, Workspace
from endpoints.services import endpoint_create

# The real worker, broker, database and HTTPS receivers: fixtures for tests/e2e and tests/browser.
pytest_plugins = ["tests.services"]

REQUIRE_SERVICES = os.environ.get("WEBHOOKS_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip a test that needs a real service; in CI (WEBHOOKS_REQUIRE_SERVICES) fail it."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (WEBHOOKS_REQUIRE_SERVICES is set, so this is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user(username="olivia", password="pw-olivia-123")


@pytest.fixture
def workspace(db, owner):
    workspace = Workspace.objects.create(slug="acme", name="Acme Agency")
    Membership.objects.create(user=owner, workspace=workspace, role=Membership.Role.OWNER)
    return workspace


@pytest.fixture
def make_endpoint(workspace):
    """Create an endpoint through the service; returns (endpoint, secret)."""

    def make(url="https://hooks.example.com/clientflow", event_types=("invoice.paid",), **kwargs):
        return endpoint_create(workspace=kwargs.pop("workspace", workspace), url=url, event_types=event_types, **kwargs)

    return make


@pytest.fixture(scope="session")
def ca():
    """The CA that test receivers' certificates come from; trusted via WEBHOOKS_CA_BUNDLE."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


LOOPBACK = ["127.0.0.0/8", "::1/128"]


@pytest.fixture(autouse=True)
def _loopback_receivers(settings):
    """Test receivers listen on 127.0.0.1, which the SSRF guard refuses unless allowed."""
    settings.WEBHOOKS_ALLOWED_PRIVATE_NETWORKS = LOOPBACK


@pytest.fixture(autouse=True)
def _validate_event_data(settings):
    """Every event the tests publish must match its documented schema, as in development."""
    settings.WEBHOOKS_VALIDATE_EVENT_DATA = True


def example(event_type: str, **changes):
    """The catalogue's example `data` of `event_type`, with some fields changed."""
    from endpoints.event_types import BY_NAME

    return {**copy.deepcopy(BY_NAME[event_type].example), **changes}


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def make_user(username: str, workspace: Workspace | None = None, role: str | None = None):
    user = get_user_model().objects.create_user(username=username, password=f"pw-{username}-123")
    if workspace is not None:
        Membership.objects.create(user=user, workspace=workspace, role=role)
    return user


@pytest.fixture
def api():
    """An API client; `api.as_user(user)` authenticates it with that user's token."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    class Client(APIClient):
        def as_user(self, user):
            token, _ = Token.objects.get_or_create(user=user)
            self.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
            return self

    return Client()
