"""The settings pages over HTTP (Django's test client); tests/browser drives them in Chromium."""

import pytest
from django.utils import timezone

from clientflow_webhooks.models import Membership, Workspace
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services import event_publish
from endpoints.models import Endpoint
from tests.conftest import example, make_user

BASE = "/workspaces/acme/settings/webhooks/"
GOOD = {"url": "https://hooks.example.com/in", "description": "CRM", "event_types": ["invoice.paid", "task.created"]}


@pytest.fixture
def browser_client(client, owner, workspace):
    client.force_login(owner)
    return client


def create(client, **overrides):
    return client.post(f"{BASE}new/", {**GOOD, **overrides})


def test_anonymous_people_are_sent_to_log_in(client, workspace):
    response = client.get(BASE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_empty_state_explains_webhooks_and_links_the_receiving_docs(browser_client):
    page = browser_client.get(BASE).content.decode()
    assert "No endpoints yet" in page
    assert 'href="/docs/receiving/"' in page
    assert "New endpoint" in page
    assert browser_client.get("/docs/receiving/").status_code == 200


def test_create_shows_the_secret_once(browser_client):
    response = create(browser_client)
    endpoint = Endpoint.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{BASE}{endpoint.id}/secret/"
    first = browser_client.get(response["Location"])
    assert endpoint.secret in first.content.decode()
    assert "will not be shown again" in first.content.decode()
    assert "no-store" in first["Cache-Control"]
    again = browser_client.get(response["Location"]).content.decode()
    assert endpoint.secret not in again
    assert "is not shown again" in again


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "http://hooks.example.com/in"}, "HTTPS is required."),
        ({"url": "not a url"}, "Enter a valid URL, such as https://example.com/webhooks."),
        ({"event_types": []}, "Choose at least one event type."),
    ],
)
def test_form_errors_appear_and_keep_what_was_typed(browser_client, overrides, message):
    response = create(browser_client, **overrides)
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert 'value="CRM"' in page
    if overrides.get("url"):
        assert f'value="{overrides["url"]}"' in page
    if "event_types" not in overrides:
        assert 'value="invoice.paid" data-group-member="invoice" checked' in page
    assert not Endpoint.objects.exists()


def test_disable_and_enable_need_confirmation_and_keep_the_secret(browser_client):
    create(browser_client)
    endpoint = Endpoint.objects.get()
    confirm = browser_client.get(f"{BASE}{endpoint.id}/disable/").content.decode()
    assert "signing secret stay the same" in confirm
    assert Endpoint.objects.get().enabled  # a GET changes nothing
    browser_client.post(f"{BASE}{endpoint.id}/disable/")
    assert not Endpoint.objects.get().enabled
    detail = browser_client.get(f"{BASE}{endpoint.id}/").content.decode()
    assert "Disabled" in detail and "secret stays the same" in detail
    browser_client.post(f"{BASE}{endpoint.id}/enable/")
    assert Endpoint.objects.get().enabled
    assert Endpoint.objects.get().secret == endpoint.secret


def test_rotate_shows_the_new_secret_once(browser_client):
    create(browser_client)
    old = Endpoint.objects.get().secret
    response = browser_client.post(f"{BASE}{Endpoint.objects.get().id}/rotate-secret/")
    new = Endpoint.objects.get().secret
    assert new != old
    assert new in browser_client.get(response["Location"]).content.decode()
    assert new not in browser_client.get(response["Location"]).content.decode()


def test_send_test_event_shows_the_result_on_the_page(browser_client):
    create(browser_client)
    endpoint = Endpoint.objects.get()
    response = browser_client.post(f"{BASE}{endpoint.id}/test/")
    delivery = Delivery.objects.get()
    assert response["Location"] == f"{BASE}{endpoint.id}/?test={delivery.id}#test-result"
    page = browser_client.get(response["Location"]).content.decode()
    assert "Test event sent" in page
    assert str(delivery.id) in page


def test_edit_keeps_the_secret_and_delete_keeps_the_history(browser_client, workspace):
    create(browser_client)
    endpoint = Endpoint.objects.get()
    edit = browser_client.get(f"{BASE}{endpoint.id}/edit/").content.decode()
    assert 'value="https://hooks.example.com/in"' in edit
    browser_client.post(f"{BASE}{endpoint.id}/edit/", {**GOOD, "url": "https://new.example.com/in"})
    assert Endpoint.objects.get().url == "https://new.example.com/in"
    assert Endpoint.objects.get().secret == endpoint.secret
    event_publish(workspace=workspace, event_type="invoice.paid", data=example("invoice.paid"))
    browser_client.post(f"{BASE}{endpoint.id}/delete/")
    assert not Endpoint.objects.exists()
    assert Delivery.objects.get().endpoint is None


def test_delivery_page_shows_payload_and_attempts(browser_client, workspace):
    create(browser_client)
    delivery = event_publish(
        workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", invoice_id="inv_7")
    ).deliveries.get()
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        duration_ms=42,
        request_headers={"X-ClientFlow-Delivery": str(delivery.id)},
        response_status=503,
        response_body="try later",
        error="HTTP 503",
        outcome="transient",
    )
    page = browser_client.get(f"{BASE}deliveries/{delivery.id}/").content.decode()
    assert "inv_7" in page and "try later" in page and "42 ms" in page and "HTTP 503" in page


def test_a_member_sees_everything_but_no_change_buttons_and_a_forged_post_is_403(client, workspace):
    owner = Membership.objects.get(workspace=workspace).user
    client.force_login(owner)
    create(client)
    endpoint = Endpoint.objects.get()
    member = make_user("mia", workspace, Membership.Role.MEMBER)
    client.force_login(member)
    listing = client.get(BASE).content.decode()
    assert "hooks.example.com" in listing and "New endpoint" not in listing
    detail = client.get(f"{BASE}{endpoint.id}/").content.decode()
    for button in ("Send Test Event", "Disable", "Rotate secret", "Delete", "Edit"):
        assert button not in detail
    for path in ("new/", f"{endpoint.id}/disable/", f"{endpoint.id}/edit/", f"{endpoint.id}/rotate-secret/"):
        assert client.get(BASE + path).status_code == 403
    for path in ("new/", f"{endpoint.id}/disable/", f"{endpoint.id}/test/", f"{endpoint.id}/delete/"):
        assert client.post(BASE + path, GOOD).status_code == 403
    assert Endpoint.objects.get().enabled and Endpoint.objects.count() == 1
    assert not Delivery.objects.exists()


def test_outsiders_get_404_everywhere(client, workspace):
    owner = Membership.objects.get(workspace=workspace).user
    client.force_login(owner)
    create(client)
    endpoint = Endpoint.objects.get()
    delivery = event_publish(
        workspace=workspace, event_type="invoice.paid", data=example("invoice.paid")
    ).deliveries.get()
    other = Workspace.objects.create(slug="beta", name="Beta")
    client.force_login(make_user("bob", other, Membership.Role.OWNER))
    paths = ["", "new/", f"deliveries/{delivery.id}/"] + [
        f"{endpoint.id}/{action}"
        for action in ("", "edit/", "secret/", "test/", "disable/", "enable/", "rotate-secret/", "delete/")
    ]
    for path in paths:
        response = client.get(BASE + path)
        assert response.status_code == 404, path
        assert "hooks.example.com" not in response.content.decode()
        assert client.post(BASE + path, GOOD).status_code == 404, path
    assert Endpoint.objects.get().enabled and Endpoint.objects.count() == 1
    assert Delivery.objects.count() == 1


def test_a_post_without_the_csrf_token_is_refused(workspace, owner):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(f"{BASE}new/", GOOD)
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_an_empty_form_reports_every_field_at_once(browser_client):
    page = browser_client.post(f"{BASE}new/", {}).content.decode()
    assert "This field is required." in page
    assert "Choose at least one event type." in page
    assert 'id="id_url_error"' in page and 'aria-describedby="id_url_helptext id_url_error"' in page


def test_the_secret_waits_only_for_the_next_page_and_a_head_does_not_use_it(browser_client):
    create(browser_client)
    first = Endpoint.objects.get()
    create(browser_client, url="https://second.example.com/in")  # a double submit
    second = Endpoint.objects.exclude(id=first.id).get()
    assert browser_client.head(f"{BASE}{second.id}/secret/").status_code == 200
    assert second.secret in browser_client.get(f"{BASE}{second.id}/secret/").content.decode()
    assert first.secret in browser_client.get(f"{BASE}{first.id}/secret/").content.decode()
    create(browser_client, url="https://third.example.com/in")
    browser_client.get(BASE)  # any other page: the waiting secret is dropped
    third = Endpoint.objects.order_by("id").last()
    assert third.secret not in browser_client.get(f"{BASE}{third.id}/secret/").content.decode()
    assert "endpoints.new_secrets" not in browser_client.session or not browser_client.session["endpoints.new_secrets"]


def test_a_secret_not_picked_up_in_time_is_not_shown(browser_client, monkeypatch):
    from endpoints import views

    monkeypatch.setattr(views, "SECRET_WAITS_SECONDS", -1)  # already past its time when it is read
    create(browser_client)
    endpoint = Endpoint.objects.get()
    assert endpoint.secret not in browser_client.get(f"{BASE}{endpoint.id}/secret/").content.decode()


def test_deliveries_table_paginates_and_odd_parameters_are_harmless(browser_client, workspace):
    create(browser_client)
    endpoint = Endpoint.objects.get()
    for n in range(25):
        event_publish(
            workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", invoice_id=f"inv_{n}")
        )
    first = browser_client.get(f"{BASE}{endpoint.id}/")
    assert len(first.context["page"].object_list) == 20
    assert "Page 1 of 2" in first.content.decode()
    second = browser_client.get(f"{BASE}{endpoint.id}/", {"page": 2})
    seen = [d.id for d in first.context["page"].object_list] + [d.id for d in second.context["page"].object_list]
    assert sorted(seen) == sorted(Delivery.objects.values_list("id", flat=True))
    for params in (
        {"page": "abc"},
        {"page": "-1"},
        {"page": "99999999999999999999"},
        {"test": "garbage"},
        {"test": ""},
    ):
        assert browser_client.get(f"{BASE}{endpoint.id}/", params).status_code == 200, params


def test_success_rate_never_rounds_up_to_100(browser_client, workspace):
    create(browser_client)
    endpoint = Endpoint.objects.get()
    for n in range(200):
        event_publish(
            workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", invoice_id=f"inv_{n}")
        )
    Delivery.objects.update(status="succeeded")
    Delivery.objects.filter(id=Delivery.objects.first().id).update(status="exhausted")
    assert "99.5 %" in browser_client.get(f"{BASE}{endpoint.id}/").content.decode()


def test_workspace_switcher_lists_every_workspace_of_the_person(client, workspace, owner):
    other = Workspace.objects.create(slug="beta", name="Beta Studio")
    Membership.objects.create(user=owner, workspace=other, role="member")
    client.force_login(owner)
    page = client.get(BASE).content.decode()
    assert 'href="/workspaces/beta/settings/webhooks/"' in page
    assert client.get("/").status_code == 302


def test_the_waiting_secret_is_encrypted_in_the_session(browser_client):
    create(browser_client)
    endpoint = Endpoint.objects.get()
    from django.contrib.sessions.models import Session

    stored = Session.objects.get().session_data
    assert endpoint.secret not in stored
    assert endpoint.secret not in str(Session.objects.get().get_decoded())


def test_rotate_offers_the_overlap_with_24_hours_chosen(browser_client):
    create(browser_client)
    endpoint = Endpoint.objects.get()
    page = browser_client.get(f"{BASE}{endpoint.id}/rotate-secret/").content.decode()
    for value, label in [("0", "None"), ("1", "1 hour"), ("24", "24 hours"), ("168", "7 days")]:
        assert f'value="{value}"' in page and label in page
    assert '<input type="radio" name="overlap_hours" value="24" id="id_overlap_hours_2" checked>' in page
    assert page.count(" checked>") == 1
    assert Endpoint.objects.get().secret == endpoint.secret  # a GET changes nothing


def test_rotate_with_an_overlap_shows_when_it_ends_and_it_can_be_ended_early(browser_client):
    create(browser_client)
    old = Endpoint.objects.get()
    response = browser_client.post(f"{BASE}{old.id}/rotate-secret/", {"overlap_hours": "168"})
    rotated = Endpoint.objects.get()
    ends = rotated.previous_secret_expires_at.strftime("%Y-%m-%d %H:%M")
    secret_page = browser_client.get(response["Location"]).content.decode()
    assert rotated.secret in secret_page and old.secret not in secret_page
    assert "Until <time" in secret_page and ends in secret_page
    detail = browser_client.get(f"{BASE}{old.id}/").content.decode()
    assert "Overlap: the previous secret also signs deliveries until" in detail and ends in detail
    assert f'href="{BASE}{old.id}/end-overlap/"' in detail

    confirm = browser_client.get(f"{BASE}{old.id}/end-overlap/").content.decode()
    assert "End the overlap now?" in confirm
    assert Endpoint.objects.get().previous_secret is not None  # a GET changes nothing
    ended = browser_client.post(f"{BASE}{old.id}/end-overlap/", follow=True).content.decode()
    assert "Overlap ended: deliveries are signed with the current secret only." in ended
    assert "Overlap:" not in ended
    assert Endpoint.objects.get().secrets_valid(at=timezone.now()) == [rotated.secret]
    again = browser_client.post(f"{BASE}{old.id}/end-overlap/", follow=True).content.decode()
    assert "There was no overlap to end." in again


@pytest.mark.parametrize("overlap", ["5", "-1", "a day", "169"])
def test_a_bad_overlap_is_a_form_error_and_changes_nothing(browser_client, overlap):
    create(browser_client)
    endpoint = Endpoint.objects.get()
    response = browser_client.post(f"{BASE}{endpoint.id}/rotate-secret/", {"overlap_hours": overlap})
    assert response.status_code == 200
    assert "Select a valid choice." in response.content.decode()
    stored = Endpoint.objects.get()
    assert (stored.secret, stored.previous_secret) == (endpoint.secret, None)


def test_members_get_403_for_rotating_and_ending_an_overlap(client, workspace, make_endpoint):
    from endpoints.services import endpoint_rotate_secret

    endpoint, _ = make_endpoint()
    endpoint_rotate_secret(endpoint=endpoint)
    client.force_login(make_user("mia", workspace, Membership.Role.MEMBER))
    detail = client.get(f"{BASE}{endpoint.id}/").content.decode()
    assert "Overlap: the previous secret also signs deliveries until" in detail
    assert "end-overlap/" not in detail
    for action in ("rotate-secret/", "end-overlap/"):
        assert client.get(f"{BASE}{endpoint.id}/{action}").status_code == 403
        assert client.post(f"{BASE}{endpoint.id}/{action}").status_code == 403
    assert Endpoint.objects.get().previous_secret_expires_at is not None


def test_the_receiving_docs_page_is_docs_receiving_md_and_the_secret_page_links_it(browser_client):
    docs = browser_client.get("/docs/receiving/").content.decode()
    assert "<h1>Receiving webhooks</h1>" in docs
    assert "<th>header</th>" in docs and "<code>webhook-signature</code>" in docs
    assert "function verifyWebhook(rawBody, signatureHeader, secret)" in docs
    assert "<h3><code>invoice.paid</code></h3>" in docs
    response = create(browser_client)
    secret_page = browser_client.get(response["Location"]).content.decode()
    assert 'href="/docs/receiving/"' in secret_page
    assert "webhook-signature" in secret_page and "X-ClientFlow-Signature" in secret_page
