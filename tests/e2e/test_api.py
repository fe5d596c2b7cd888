"""The API end to end: create an endpoint, press test, see what the receiver got."""

import json

import pytest

from deliveries.signing import signature_matches
from tests.services import wait_for

pytestmark = pytest.mark.services


def test_create_endpoint_send_test_event_and_read_the_attempt(worker, receiver, workspace, owner, api):
    client = api.as_user(owner)
    created = client.post(
        "/api/v1/workspaces/acme/endpoints/",
        {"url": receiver.url("/api"), "event_types": ["invoice.paid"], "description": "e2e"},
        format="json",
    )
    assert created.status_code == 201
    endpoint = created.json()

    tested = client.post(f"/api/v1/workspaces/acme/endpoints/{endpoint['id']}/test/")
    assert tested.status_code == 202
    delivery_url = f"/api/v1/workspaces/acme/deliveries/{tested.json()['id']}/"

    def succeeded():
        body = client.get(delivery_url).json()
        return body if body["status"] == "succeeded" else None

    delivery = wait_for(succeeded, timeout=30, message="the test delivery to succeed")
    [got] = receiver.received("/api")
    assert got.headers["X-ClientFlow-Event"] == "webhook.test"
    assert got.headers["X-ClientFlow-Delivery"] == delivery["id"]
    assert signature_matches(secret=endpoint["secret"], body=got.body, header=got.headers["X-ClientFlow-Signature"])
    assert json.loads(got.body) == delivery["payload"]
    [attempt] = delivery["attempts"]
    assert (attempt["number"], attempt["outcome"], attempt["response_status"]) == (1, "success", 200)
    assert attempt["request_headers"]["X-ClientFlow-Signature"] == got.headers["X-ClientFlow-Signature"][:15] + "…"
    assert attempt["response_body"] == "status 200"

    listed = client.get("/api/v1/workspaces/acme/deliveries/", {"endpoint": endpoint["id"]}).json()["results"]
    assert [d["id"] for d in listed] == [delivery["id"]]
    health = client.get(f"/api/v1/workspaces/acme/endpoints/{endpoint['id']}/").json()
    assert (health["last_delivery_status"], health["deliveries_24h"], health["success_rate_24h"]) == (
        "succeeded",
        1,
        1.0,
    )
