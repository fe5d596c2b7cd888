"""The whole seed walkthrough in Chromium, against a real worker, Redis, PostgreSQL and an
HTTPS receiver: create, secret once, test event, delivery page, disable, enable."""

import json
import time

import pytest
from playwright.sync_api import expect

from deliveries.models import Delivery
from deliveries.services import event_publish
from deliveries.signing import signature_matches
from endpoints.models import Endpoint
from tests.browser.conftest import log_in
from tests.conftest import example
from tests.services import wait_for

pytestmark = pytest.mark.services
BASE = "/workspaces/acme/settings/webhooks/"


def test_create_read_secret_once_test_disable_enable(page, worker, receiver, owner, workspace):
    visited: list[str] = []

    def remember():
        visited.append(page.content())

    log_in(page, "olivia", "pw-olivia-123")
    page.get_by_role("link", name="New endpoint").first.click()
    page.get_by_label("URL").fill(receiver.url("/browser"))
    page.get_by_role("checkbox", name="invoice.paid").check()
    page.get_by_role("button", name="Create endpoint").click()

    # The secret, once.
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    expect(page.get_by_text("X-ClientFlow-Signature").first).to_be_visible()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    page.reload()
    expect(page.get_by_text("is not shown again")).to_be_visible()
    remember()

    # Send Test Event: the receiver gets it, signed with that secret; the page shows the result.
    page.get_by_role("link", name="Go to the endpoint").click()
    page.go_back()  # the browser's Back asks again (no-store), and the secret is gone
    expect(page.get_by_text("is not shown again")).to_be_visible()
    remember()
    page.go_forward()
    page.get_by_role("button", name="Send Test Event").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Test event sent")
    expect(result.locator("[data-delivery-status]")).to_contain_text("succeeded", timeout=30_000)
    remember()
    [got] = receiver.received("/browser")
    assert got.headers["X-ClientFlow-Event"] == "webhook.test"
    assert signature_matches(secret=secret, body=got.body, header=got.headers["X-ClientFlow-Signature"])

    # The delivery and its attempt.
    result.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Attempt 1")).to_be_visible()
    expect(page.locator(".attempt")).to_contain_text("200")
    expect(page.locator(".payload")).to_contain_text("webhook.test")
    remember()

    # Disable: a published event does not arrive.
    page.go_back()
    page.go_back()
    page.get_by_role("link", name="Disable").click()
    expect(page.get_by_text("signing secret stay the same")).to_be_visible()
    page.get_by_role("button", name="Disable endpoint").click()
    expect(page.get_by_text("Endpoint disabled")).to_be_visible()
    remember()
    endpoint = Endpoint.objects.get()
    while_disabled = event_publish(
        workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", invoice_id="inv_disabled")
    )
    assert not while_disabled.deliveries.exists()

    # Enable: the next event arrives, signed with the same secret.
    page.get_by_role("link", name="Enable").click()
    page.get_by_role("button", name="Enable endpoint").click()
    expect(page.get_by_text("Endpoint enabled")).to_be_visible()
    remember()
    after = event_publish(
        workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", invoice_id="inv_enabled")
    )
    delivery = after.deliveries.get(endpoint=endpoint)
    wait_for(lambda: Delivery.objects.get(id=delivery.id).status == "succeeded", message="the delivery after enable")
    time.sleep(0.5)
    bodies = [json.loads(r.body)["data"] for r in receiver.received("/browser")]
    assert bodies[1:] == [example("invoice.paid", invoice_id="inv_enabled")]
    last = receiver.received("/browser")[-1]
    assert signature_matches(secret=secret, body=last.body, header=last.headers["X-ClientFlow-Signature"])

    # The secret is in no page's HTML afterwards.
    for path in (BASE, f"{BASE}{endpoint.id}/", f"{BASE}{endpoint.id}/edit/", f"{BASE}{endpoint.id}/secret/"):
        page.goto(path)
        remember()
    page.reload()
    remember()
    assert all(secret not in html for html in visited)
    page.goto(f"{BASE}{endpoint.id}/")
