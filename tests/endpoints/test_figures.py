"""Each endpoint's figures (24 h and 7 days, the last error) and why it was disabled: the
same in the API, on the pages and in the admin."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clientflow_webhooks.models import Membership
from deliveries import services
from deliveries.models import Delivery
from endpoints.models import Endpoint
from endpoints.services import endpoint_disable
from tests.conftest import make_user
from tests.deliveries.test_admin import make_staff
from tests.deliveries.test_operations import endpoint_at, made

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
API = "/api/v1/workspaces/acme/endpoints/"
PAGES = "/workspaces/acme/settings/webhooks/"
REASON = "Every delivery for 5 days ended as a dead letter: 12 of them since 2026-05-05 12:00 UTC."


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(services, "endpoints_wake", lambda **kwargs: None)


@pytest.fixture
def endpoint(workspace):
    """In the last 24 h: 2 succeeded, 1 failed, 1 pending. Before, within 7 days: 1 succeeded
    and 2 exhausted, the latest of all dead letters 3 days ago. Older: 1 dead letter."""
    endpoint, _ = endpoint_at(workspace, NOW - timedelta(days=30))
    for hours, status, error in [
        (1, "succeeded", ""),
        (2, "succeeded", ""),
        (3, "failed", "HTTP 410"),
        (4, "pending", "HTTP 503"),
        (48, "succeeded", ""),
        (72, "exhausted", "timed out after 10s"),
        (100, "exhausted", "HTTP 500"),
        (24 * 8, "exhausted", "TLS error: expired"),
    ]:
        made(workspace, endpoint, NOW - timedelta(hours=hours), status, error=error)
    return endpoint


@pytest.fixture
def at_now():
    with time_machine.travel(NOW, tick=False):
        yield


def test_the_api_shows_the_figures_of_24_hours_and_7_days_and_the_last_error(api, owner, endpoint, at_now):
    body = api.as_user(owner).get(f"{API}{endpoint.id}/").json()
    assert (body["deliveries_24h"], body["success_rate_24h"]) == (4, pytest.approx(2 / 3, abs=1e-4))
    assert (body["deliveries_7d"], body["success_rate_7d"]) == (7, 0.5)
    assert body["last_error"] == "HTTP 410"
    assert body["last_error_at"] == "2026-05-10T09:00:07Z"
    assert (body["disabled_reason"], body["disabled_automatically_at"]) == (None, None)


def test_listing_endpoints_costs_the_same_queries_for_one_or_many(api, owner, workspace, endpoint, at_now):
    client = api.as_user(owner)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(API).status_code == 200
        return len(captured)

    one = queries()
    for n in range(5):
        other, _ = endpoint_at(workspace, NOW - timedelta(days=1), url=f"https://hooks.example.com/{n}")
        made(workspace, other, NOW - timedelta(hours=1), "exhausted")
    assert queries() == one


def auto_disabled(endpoint: Endpoint) -> Endpoint:
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        return endpoint_disable(endpoint=endpoint, reason=REASON, automatically=True)


def test_the_api_says_why_an_endpoint_was_disabled_and_enable_clears_it(api, owner, endpoint, at_now):
    secret = endpoint.secret
    auto_disabled(endpoint)
    client = api.as_user(owner)
    body = client.get(f"{API}{endpoint.id}/").json()
    assert body["enabled"] is False
    assert body["disabled_reason"] == REASON
    assert body["disabled_automatically_at"] == "2026-05-10T11:00:00Z"

    enabled = client.post(f"{API}{endpoint.id}/enable/").json()
    assert enabled["enabled"] is True
    assert (enabled["disabled_reason"], enabled["disabled_automatically_at"]) == (None, None)
    assert Endpoint.objects.get(id=endpoint.id).secret == secret

    # Disabled by a person: no reason to show.
    body = client.post(f"{API}{endpoint.id}/disable/").json()
    assert (body["enabled"], body["disabled_reason"], body["disabled_automatically_at"]) == (False, None, None)


def test_the_endpoint_page_shows_the_figures(client, owner, endpoint, at_now):
    client.force_login(owner)
    page = client.get(f"{PAGES}{endpoint.id}/").content.decode()
    assert '<dd data-stat="deliveries-24h">4, success rate 66.6 % of 3 ended</dd>' in page
    assert '<dd data-stat="deliveries-7d">7, success rate 50 % of 6 ended</dd>' in page
    assert "HTTP 410" in page
    listing = client.get(PAGES).content.decode()
    assert "Success (7 days)" in listing
    assert "<td>66.6 %</td>" in listing and "<td>50 %</td>" in listing


def test_an_auto_disabled_endpoint_page_says_why_and_enables_in_one_click(client, owner, endpoint, at_now):
    secret = endpoint.secret
    auto_disabled(endpoint)
    client.force_login(owner)
    page = client.get(f"{PAGES}{endpoint.id}/").content.decode()
    assert "Disabled automatically" in page
    assert REASON in page
    assert f'action="{PAGES}{endpoint.id}/enable/"' in page
    assert "automatically: every delivery failed" in client.get(PAGES).content.decode()

    response = client.post(f"{PAGES}{endpoint.id}/enable/")
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.secret == secret
    assert (endpoint.disabled_reason, endpoint.disabled_automatically_at) == ("", None)
    assert "Disabled automatically" not in client.get(f"{PAGES}{endpoint.id}/").content.decode()


def test_members_see_why_but_get_no_enable_button(client, workspace, endpoint, at_now):
    auto_disabled(endpoint)
    member = make_user("mia", workspace, Membership.Role.MEMBER)
    client.force_login(member)
    page = client.get(f"{PAGES}{endpoint.id}/").content.decode()
    assert REASON in page
    assert f'action="{PAGES}{endpoint.id}/enable/"' not in page
    assert client.post(f"{PAGES}{endpoint.id}/enable/").status_code == 403
    assert not Endpoint.objects.get(id=endpoint.id).enabled


def test_the_admin_endpoint_page_shows_the_figures_and_the_reason(client, endpoint, at_now):
    auto_disabled(endpoint)
    client.force_login(make_staff("sam", group="Support"))
    page = client.get(f"/admin/endpoints/endpoint/{endpoint.id}/change/").content.decode()
    assert "4, success rate 66.6 %" in page
    assert "7, success rate 50 %" in page
    assert "HTTP 410 (2026-05-10 09:00 UTC)" in page
    assert REASON in page
    assert client.get("/admin/endpoints/endpoint/").status_code == 200


def test_figures_leave_out_cancelled_deliveries_from_the_rate(api, owner, workspace, at_now):
    endpoint, _ = endpoint_at(workspace, NOW - timedelta(days=2))
    made(workspace, endpoint, NOW - timedelta(hours=1), "succeeded")
    made(workspace, endpoint, NOW - timedelta(hours=1), "cancelled", error="The endpoint is disabled.")
    body = api.as_user(owner).get(f"{API}{endpoint.id}/").json()
    assert (body["deliveries_24h"], body["success_rate_24h"], body["last_error"]) == (2, 1.0, None)
    assert Delivery.objects.filter(endpoint=endpoint).count() == 2
