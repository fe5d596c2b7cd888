"""Support replays an exhausted delivery from the admin, in Chromium, against a real
worker, Redis, PostgreSQL and an HTTPS receiver that failed and then healed."""

import pytest
from playwright.sync_api import expect

from deliveries.models import Delivery
from deliveries.services import event_publish
from deliveries.signing import signature_matches
from endpoints.services import endpoint_rotate_secret, endpoint_update
from tests.conftest import example
from tests.deliveries.test_admin import make_staff
from tests.services import Worker, wait_for

pytestmark = pytest.mark.services


def test_support_replays_an_exhausted_delivery_from_the_admin(
    page, worker_env, tmp_path, receiver, workspace, make_endpoint
):
    worker = Worker({**worker_env, "WEBHOOKS_RETRY_DELAYS": "0.5,0.5,0.5"}, tmp_path)
    worker.start()
    try:
        endpoint, _ = make_endpoint(url=receiver.url("/outage"))
        receiver.script("/outage", 500, 503, 502, 500)  # down for four attempts, then healthy
        delivery = event_publish(
            workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", invoice_id="inv_9")
        ).deliveries.get()
        wait_for(lambda: Delivery.objects.get(id=delivery.id).status == "exhausted", timeout=30, message="exhaustion")
        # While it was down, the customer moved the endpoint and rotated its secret:
        # the replay must use the endpoint as it is now.
        endpoint_update(endpoint=endpoint, url=receiver.url("/healed"))
        secret = endpoint_rotate_secret(endpoint=endpoint)

        make_staff("sam", group="Support")
        page.goto("/admin/login/")
        page.fill("#id_username", "sam")
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        page.goto("/admin/deliveries/deadletter/")
        row = page.locator("#result_list tbody tr", has_text="healed")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("HTTP 500")
        row.locator("input.action-select").check()
        page.select_option("select[name=action]", "replay")
        page.click("button[name=index]")
        expect(page.locator(".messagelist")).to_contain_text("Replayed 1 dead letter.")

        wait_for(lambda: Delivery.objects.get(id=delivery.id).status == "succeeded", timeout=30, message="success")
    finally:
        worker.stop()

    delivery.refresh_from_db()
    assert delivery.attempt_count == 5
    assert [a.number for a in delivery.attempts.all()] == [1, 2, 3, 4, 5]
    got = receiver.received("/outage") + receiver.received("/healed")
    assert [r.path for r in got] == ["/outage"] * 4 + ["/healed"]
    assert {r.body for r in got} == {got[0].body}  # the same event bytes
    assert {r.headers["X-ClientFlow-Delivery"] for r in got} == {str(delivery.id)}
    assert signature_matches(secret=secret, body=got[-1].body, header=got[-1].headers["X-ClientFlow-Signature"])
    page.goto(f"/admin/deliveries/delivery/{delivery.id}/change/")
    expect(page.locator("#replays-group")).to_contain_text("sam")  # the replay, recorded on the delivery's page
