"""An endpoint disabled automatically, in Chromium: the page says why and shows its figures,
one click enables it again, and deliveries arrive signed with the same secret (a real
worker, Redis, PostgreSQL and HTTPS receiver)."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from playwright.sync_api import expect

from deliveries import operations
from deliveries.signing import signature_matches
from endpoints.models import Endpoint
from tests.browser.conftest import RESULTS, log_in
from tests.deliveries.test_operations import endpoint_at, made

pytestmark = pytest.mark.services
BASE = "/workspaces/acme/settings/webhooks/"


def test_an_auto_disabled_endpoint_says_why_and_enables_in_one_click(page, worker, receiver, owner, workspace):
    now = timezone.now()
    endpoint, secret = endpoint_at(workspace, now - timedelta(days=20), url=receiver.url("/dead"))
    made(workspace, endpoint, now - timedelta(days=8), "succeeded")
    for hours in range(6 * 24 - 6, 0, -12):  # a dead letter every 12 hours for 6 days
        made(workspace, endpoint, now - timedelta(hours=hours), "exhausted", error="HTTP 503")
    with time_machine.travel(now, tick=False):
        assert operations.endpoints_auto_disable() == [endpoint]

    log_in(page, "olivia", "pw-olivia-123")
    listing = page.get_by_role("row", name=receiver.url("/dead"))
    expect(listing).to_contain_text("Disabled")
    expect(listing).to_contain_text("automatically: every delivery failed")
    listing.get_by_role("link").first.click()

    notice = page.locator("#auto-disabled")
    expect(notice.get_by_role("heading", name="Disabled automatically")).to_be_visible()
    expect(notice).to_contain_text("Every delivery for 5 days ended as a dead letter: 10 of them since")
    expect(notice).to_contain_text("the last one because of HTTP 503.")
    expect(page.locator('[data-stat="deliveries-24h"]')).to_have_text("2, success rate 0 % of 2 ended")
    expect(page.locator('[data-stat="deliveries-7d"]')).to_have_text("12, success rate 0 % of 12 ended")
    expect(page.locator('[data-stat="last-error"]')).to_contain_text("HTTP 503")
    (RESULTS / "screenshots").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(RESULTS / "screenshots" / "auto_disabled_endpoint.png"), full_page=True)

    # One click: no confirmation page.
    notice.get_by_role("button", name="Enable endpoint").click()
    expect(page.get_by_text("Endpoint enabled")).to_be_visible()
    expect(page.locator("#auto-disabled")).to_have_count(0)
    assert Endpoint.objects.get(id=endpoint.id).enabled

    page.get_by_role("button", name="Send Test Event").click()
    expect(page.locator("#test-result [data-delivery-status]")).to_contain_text("succeeded", timeout=30_000)
    [got] = receiver.received("/dead")
    assert signature_matches(secret=secret, body=got.body, header=got.headers["X-ClientFlow-Signature"])
