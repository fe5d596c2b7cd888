from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services import event_publish, send_test_event
from tests.conftest import example

BASE = "/api/v1/workspaces/acme/deliveries/"


@pytest.fixture
def client(api, owner, workspace):
    return api.as_user(owner)


@pytest.fixture
def history(workspace, make_endpoint):
    """Two endpoints and five deliveries of different types and statuses."""
    paid, _ = make_endpoint(url="https://a.example.com/", event_types=["invoice.paid", "task.created"])
    tasks, _ = make_endpoint(url="https://b.example.com/", event_types=["task.created"])
    event_publish(workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", invoice_id="inv_1"))
    event_publish(workspace=workspace, event_type="task.created", data=example("task.created"))
    send_test_event(endpoint=tasks)
    Delivery.objects.filter(endpoint=paid, event__type="invoice.paid").update(status="succeeded")
    Delivery.objects.filter(endpoint=tasks, event__type="task.created").update(status="exhausted")
    return {"paid": paid, "tasks": tasks}


def ids(response):
    assert response.status_code == 200, response.content
    return [d["id"] for d in response.json()["results"]]


def test_list_is_newest_first_and_paginated(client, history):
    everything = ids(client.get(BASE))
    expected = [str(i) for i in Delivery.objects.order_by("-created_at", "-id").values_list("id", flat=True)]
    assert everything == expected and len(everything) == 4
    first = client.get(BASE, {"page_size": 3}).json()
    assert len(first["results"]) == 3 and first["next"]
    second = client.get(first["next"]).json()
    assert [d["id"] for d in first["results"] + second["results"]] == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "succeeded"}, 1),
        ({"status": "exhausted"}, 1),
        ({"status": "pending"}, 2),
        ({"event_type": "task.created"}, 2),
        ({"event_type": "webhook.test"}, 1),
        ({"endpoint": "tasks"}, 2),
        ({"endpoint": "tasks", "status": "pending"}, 1),
    ],
)
def test_filters(client, history, params, expected):
    if params.get("endpoint"):
        params = {**params, "endpoint": history[params["endpoint"]].id}
    assert len(ids(client.get(BASE, params))) == expected


def test_any_iso_offset_is_accepted(client, history):
    # Found by schemathesis: PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows.
    assert ids(client.get(BASE, {"created_after": "0958-10-03T08:56:22.005-21:31"})) != []


def test_time_range_filter(client, history):
    old = Delivery.objects.order_by("created_at").first()
    Delivery.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=3))
    cutoff = (timezone.now() - timedelta(days=1)).isoformat()
    assert str(old.id) not in ids(client.get(BASE, {"created_after": cutoff}))
    assert ids(client.get(BASE, {"created_before": cutoff})) == [str(old.id)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"event_type": "invoice.lost"}, "event_type"),
        ({"endpoint": "abc"}, "endpoint"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-13-45"}, "created_before"),
        ({"created_before": "0001-01-01T00:10:00+01:00"}, "created_before"),
    ],
)
def test_bad_filters_are_400_on_the_field(client, history, params, field):
    response = client.get(BASE, params)
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_detail_shows_payload_and_every_attempt(client, history):
    delivery = Delivery.objects.filter(event__type="invoice.paid").get()
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        duration_ms=12,
        request_headers={"X-ClientFlow-Delivery": str(delivery.id)},
        response_status=503,
        response_headers={"Retry-After": "1"},
        response_body="busy",
        error="HTTP 503",
        outcome="transient",
    )
    body = client.get(f"{BASE}{delivery.id}/").json()
    assert body["event_id"] == delivery.event.id
    assert body["event_type"] == "invoice.paid"
    assert body["payload"]["data"] == example("invoice.paid", invoice_id="inv_1")
    assert body["payload"]["id"] == delivery.event.id
    [attempt] = body["attempts"]
    assert attempt == {
        "number": 1,
        "started_at": attempt["started_at"],
        "duration_ms": 12,
        "request_headers": {"X-ClientFlow-Delivery": str(delivery.id)},
        "response_status": 503,
        "response_headers": {"Retry-After": "1"},
        "response_body": "busy",
        "error": "HTTP 503",
        "outcome": "transient",
    }


def test_unknown_delivery_is_404(client, history):
    assert client.get(f"{BASE}00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get(f"{BASE}not-a-uuid/").status_code == 404


@pytest.mark.parametrize(
    "position",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "abc",
        "2024-01-01T00:00:00",
    ],
)
@pytest.mark.parametrize("path", [BASE, "audit"])
def test_a_crafted_cursor_is_404_never_500(client, history, position, path):
    import base64
    from urllib.parse import quote

    if path == "audit":
        path = f"/api/v1/workspaces/acme/endpoints/{history['paid'].id}/audit/"
    cursor = base64.b64encode(f"p={quote(position)}".encode()).decode()
    response = client.get(path, {"cursor": cursor})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


def test_a_cursor_with_an_offset_postgresql_refuses_still_works(client, history):
    import base64

    cursor = base64.b64encode(b"p=2024-01-01T00:00:00%2B20:00").decode()
    assert client.get(BASE, {"cursor": cursor}).status_code == 200


def test_pages_do_not_skip_or_repeat_rows_with_equal_times(client, history):
    Delivery.objects.update(created_at=timezone.now())
    pages, url = [], f"{BASE}?page_size=1"
    while url:
        body = client.get(url).json()
        pages += [d["id"] for d in body["results"]]
        url = body["next"]
    assert sorted(pages) == sorted(str(i) for i in Delivery.objects.values_list("id", flat=True))
