"""The admin shows when an endpoint's overlap ends, and staff who may change endpoints can
end it early, from the list or from the endpoint's page."""

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from endpoints.models import Endpoint, EndpointAuditEntry
from endpoints.services import endpoint_rotate_secret
from tests.deliveries.test_admin import make_staff

CHANGELIST = reverse("admin:endpoints_endpoint_changelist")


@pytest.fixture
def rotated(make_endpoint):
    """Two endpoints in an overlap and one without."""
    endpoints = [make_endpoint(url=f"https://h{n}.example.com/")[0] for n in range(3)]
    for endpoint in endpoints[:2]:
        endpoint_rotate_secret(endpoint=endpoint)
    return [Endpoint.objects.get(id=e.id) for e in endpoints]


def end_overlap_action(client, endpoints):
    data = {"action": "end_overlap", "_selected_action": [e.id for e in endpoints]}
    return client.post(CHANGELIST, data, follow=True)


def test_the_list_and_the_page_show_when_the_overlap_ends(client, rotated):
    client.force_login(make_staff("root", superuser=True))
    ends = date_format(timezone.localtime(rotated[0].previous_secret_expires_at), "DATETIME_FORMAT")
    listing = client.get(CHANGELIST).content.decode()
    assert "Previous secret expires at (overlap)" in listing
    assert ends in listing
    page = client.get(reverse("admin:endpoints_endpoint_change", args=[rotated[0].id])).content.decode()
    assert "previous secret expires at (overlap)" in page.lower() and ends in page
    assert "End overlap now</button>" in page
    without = client.get(reverse("admin:endpoints_endpoint_change", args=[rotated[2].id])).content.decode()
    assert "End overlap now</button>" not in without


def test_the_action_ends_the_overlaps_it_can_and_says_how_many(client, rotated):
    root = make_staff("root", superuser=True)
    client.force_login(root)
    response = end_overlap_action(client, rotated)
    assert "Ended the overlap of 2 endpoints. 1 had none." in response.content.decode()
    now = timezone.now()
    assert all(Endpoint.objects.get(id=e.id).secrets_valid(at=now) == [e.secret] for e in rotated)
    entries = EndpointAuditEntry.objects.filter(action="overlap_ended")
    assert sorted(entries.values_list("endpoint_id", flat=True)) == sorted(e.id for e in rotated[:2])
    assert {entry.actor for entry in entries} == {root}


def test_the_button_on_the_page_ends_one_overlap(client, rotated):
    client.force_login(make_staff("root", superuser=True))
    url = reverse("admin:endpoints_endpoint_end_overlap", args=[rotated[0].id])
    assert client.get(url).status_code == 405  # a GET changes nothing
    response = client.post(url, follow=True)
    assert "Ended the overlap of 1 endpoint." in response.content.decode()
    assert Endpoint.objects.get(id=rotated[0].id).previous_secret is None
    assert Endpoint.objects.get(id=rotated[1].id).previous_secret is not None


def test_support_without_the_change_permission_cannot_end_an_overlap(client, rotated):
    client.force_login(make_staff("sam", group="Support"))
    listing = client.get(CHANGELIST).content.decode()
    assert "End the overlap" not in listing
    page = client.get(reverse("admin:endpoints_endpoint_change", args=[rotated[0].id])).content.decode()
    assert "End overlap now" not in page
    forged = end_overlap_action(client, rotated)
    assert "You do not have permission to run that action" in forged.content.decode()
    button = client.post(reverse("admin:endpoints_endpoint_end_overlap", args=[rotated[0].id]), follow=True)
    assert "You may not change endpoints; the overlap goes on." in button.content.decode()
    assert all(Endpoint.objects.get(id=e.id).previous_secret is not None for e in rotated[:2])
    assert not EndpointAuditEntry.objects.filter(action="overlap_ended").exists()


def test_no_admin_page_shows_the_previous_secret(client, rotated):
    client.force_login(make_staff("root", superuser=True))
    old = Endpoint.objects.get(id=rotated[0].id).previous_secret
    for url in (CHANGELIST, reverse("admin:endpoints_endpoint_change", args=[rotated[0].id])):
        assert old not in client.get(url).content.decode()
    for lookup in ("previous_secret", "previous_secret__startswith", "previous_secret__isnull"):
        probe = client.get(CHANGELIST, {lookup: old[:10]})
        assert probe.status_code in (400, 302), lookup
        assert "h0.example.com" not in probe.content.decode()
