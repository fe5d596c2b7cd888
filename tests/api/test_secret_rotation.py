"""Rotating a secret with an overlap, and ending the overlap early, through the API."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from clientflow_webhooks.models import Membership
from endpoints.models import Endpoint, EndpointAuditEntry
from tests.conftest import make_user

BASE = "/api/v1/workspaces/acme/endpoints/"


@pytest.fixture
def client(api, owner, workspace):
    return api.as_user(owner)


@pytest.fixture
def created(client):
    return client.post(
        BASE, {"url": "https://hooks.example.com/in", "event_types": ["invoice.paid"]}, format="json"
    ).json()


def expires(body) -> datetime | None:
    value = body["previous_secret_expires_at"]
    return datetime.fromisoformat(value) if value else None


def test_a_new_endpoint_has_no_overlap(created):
    assert created["previous_secret_expires_at"] is None


@pytest.mark.parametrize(("given", "hours"), [({}, 24), ({"overlap_hours": 1}, 1), ({"overlap_hours": 168}, 168)])
def test_rotate_keeps_the_old_secret_signing_for_the_overlap_and_says_until_when(client, created, given, hours):
    url = f"{BASE}{created['id']}/"
    before = timezone.now()
    response = client.post(url + "rotate-secret/", given, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["secret"] != created["secret"]
    assert before + timedelta(hours=hours) <= expires(body) <= timezone.now() + timedelta(hours=hours)
    assert expires(client.get(url).json()) == expires(body)
    assert expires(client.get(BASE).json()[0]) == expires(body)
    stored = Endpoint.objects.get(id=created["id"])
    assert stored.secrets_valid(at=timezone.now()) == [body["secret"], created["secret"]]


def test_rotate_with_no_overlap_replaces_the_secret_at_once(client, created):
    body = client.post(f"{BASE}{created['id']}/rotate-secret/", {"overlap_hours": 0}, format="json").json()
    assert body["previous_secret_expires_at"] is None
    assert Endpoint.objects.get(id=created["id"]).secrets_valid(at=timezone.now()) == [body["secret"]]


@pytest.mark.parametrize(
    ("overlap", "message"),
    [
        (-1, "The overlap must be between 0 (none) and 168 hours (7 days)."),
        (169, "The overlap must be between 0 (none) and 168 hours (7 days)."),
        ("a day", "The overlap is a whole number of hours, 0 to 168."),
        (1.5, "The overlap is a whole number of hours, 0 to 168."),
        (None, "This field may not be null."),
    ],
)
def test_a_bad_overlap_is_a_400_on_its_field_and_changes_nothing(client, created, overlap, message):
    response = client.post(f"{BASE}{created['id']}/rotate-secret/", {"overlap_hours": overlap}, format="json")
    assert response.status_code == 400
    assert response.json() == {"overlap_hours": [message]}
    stored = Endpoint.objects.get(id=created["id"])
    assert (stored.secret, stored.previous_secret) == (created["secret"], None)
    assert list(EndpointAuditEntry.objects.values_list("action", flat=True)) == ["created"]


def test_end_overlap_stops_the_previous_secret_and_the_trail_says_so(client, created):
    url = f"{BASE}{created['id']}/"
    rotated = client.post(url + "rotate-secret/").json()

    response = client.post(url + "end-overlap/")

    assert response.status_code == 200
    assert response.json()["previous_secret_expires_at"] is None
    assert "secret" not in response.json()
    assert Endpoint.objects.get(id=created["id"]).secrets_valid(at=timezone.now()) == [rotated["secret"]]
    trail = client.get(url + "audit/").json()["results"]
    assert [entry["action"] for entry in trail] == ["overlap_ended", "secret_rotated", "created"]
    assert trail[0]["actor"] == "olivia"
    assert trail[0]["changes"]["previous_secret_expires_at"][1] is None
    assert trail[1]["changes"]["previous_secret_expires_at"][1] == rotated["previous_secret_expires_at"].replace(
        "Z", "+00:00"
    )
    # Twice, or with no overlap: harmless, and not audited again.
    assert client.post(url + "end-overlap/").status_code == 200
    assert len(client.get(url + "audit/").json()["results"]) == 3


def test_members_may_not_rotate_or_end_an_overlap(api, workspace, client, created):
    client.post(f"{BASE}{created['id']}/rotate-secret/")
    api.as_user(make_user("mia", workspace, Membership.Role.MEMBER))
    for action in ("rotate-secret/", "end-overlap/"):
        assert api.post(f"{BASE}{created['id']}/{action}").status_code == 403
    assert Endpoint.objects.get(id=created["id"]).previous_secret_expires_at is not None


def test_no_response_ever_carries_the_previous_secret(client, created):
    url = f"{BASE}{created['id']}/"
    bodies = [client.post(url + "rotate-secret/").content.decode()]
    bodies += [client.get(path).content.decode() for path in (url, BASE, url + "audit/")]
    bodies.append(client.post(url + "end-overlap/").content.decode())
    assert not any(created["secret"] in body for body in bodies)
