"""The settings pages as a person uses them, in Chromium."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from clientflow_webhooks.models import Membership, Workspace
from endpoints.models import Endpoint
from endpoints.services import endpoint_create
from tests.browser.conftest import log_in
from tests.conftest import make_user

BASE = "/workspaces/acme/settings/webhooks/"


@pytest.fixture
def signed_in(page, owner, workspace):
    log_in(page, "olivia", "pw-olivia-123")
    return page


def fill_new_endpoint(page, url, events=()):
    page.goto(f"{BASE}new/")
    page.get_by_label("URL").fill(url)
    page.get_by_label("Description").fill("Billing system")
    for name in events:
        page.get_by_role("checkbox", name=name).check()
    page.get_by_role("button", name="Create endpoint").click()


def test_log_in_lands_on_webhooks_with_the_empty_state(signed_in):
    expect(signed_in).to_have_url(f"{signed_in.url.split('/workspaces')[0]}{BASE}")
    expect(signed_in.get_by_role("heading", name="No endpoints yet")).to_be_visible()
    expect(signed_in.get_by_role("link", name="How to receive and verify webhooks")).to_be_visible()


@pytest.mark.parametrize(
    ("url", "events", "field", "message"),
    [
        ("http://hooks.example.com/in", ["invoice.paid"], "#id_url_error", "HTTPS is required."),
        ("not a url", ["invoice.paid"], "#id_url_error", "Enter a valid URL"),
        ("https://hooks.example.com/in", [], "#id_event_types_error", "Choose at least one event type."),
    ],
)
def test_form_errors_appear_beside_their_field_and_keep_the_input(signed_in, url, events, field, message):
    fill_new_endpoint(signed_in, url, events)
    expect(signed_in.locator(field)).to_contain_text(message)
    expect(signed_in.get_by_label("URL")).to_have_value(url)
    expect(signed_in.get_by_label("Description")).to_have_value("Billing system")
    for name in events:
        expect(signed_in.get_by_role("checkbox", name=name)).to_be_checked()
    assert not Endpoint.objects.exists()


def test_all_in_this_group_ticks_the_group(signed_in):
    signed_in.goto(f"{BASE}new/")
    group = signed_in.locator('fieldset[data-group="invoice"]')
    group.get_by_label("All in this group").check()
    for name in ("invoice.paid", "invoice.overdue", "invoice.refunded"):
        expect(signed_in.get_by_role("checkbox", name=name)).to_be_checked()
    expect(signed_in.get_by_role("checkbox", name="task.created")).not_to_be_checked()


def test_a_member_sees_no_change_buttons(page, workspace):
    _endpoint, _ = endpoint_create(
        workspace=workspace, url="https://hooks.example.com/in", event_types=["task.created"]
    )
    make_user("mia", workspace, Membership.Role.MEMBER)
    log_in(page, "mia", "pw-mia-123")
    page.goto(BASE)
    expect(page.get_by_role("link", name="https://hooks.example.com/in")).to_be_visible()
    expect(page.get_by_role("link", name="New endpoint")).to_have_count(0)
    page.get_by_role("link", name="https://hooks.example.com/in").click()
    expect(page.get_by_role("heading", name="Recent deliveries")).to_be_visible()
    for name in ("Send Test Event", "Disable", "Edit", "Rotate secret", "Delete"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)


def test_an_outsider_gets_404(page, workspace):
    other = Workspace.objects.create(slug="beta", name="Beta")
    make_user("bob", other, Membership.Role.OWNER)
    endpoint, _ = endpoint_create(workspace=workspace, url="https://hooks.example.com/in", event_types=["task.created"])
    log_in(page, "bob", "pw-bob-123")
    for path in (BASE, f"{BASE}{endpoint.id}/", f"{BASE}new/"):
        response = page.goto(path)
        assert response.status == 404
        assert "hooks.example.com" not in page.content()


def test_the_workspace_switcher_works_from_the_keyboard(signed_in, owner):
    other = Workspace.objects.create(slug="beta", name="Beta Studio")
    Membership.objects.create(user=owner, workspace=other, role="member")
    signed_in.goto(BASE)
    switcher = signed_in.get_by_role("navigation", name="Workspaces")
    switcher.locator("summary").focus()
    signed_in.keyboard.press("Enter")
    switcher.get_by_role("link", name="Beta Studio").focus()
    signed_in.keyboard.press("Enter")
    expect(signed_in).to_have_url(re.compile(r"/workspaces/beta/settings/webhooks/$"))
    expect(signed_in.get_by_role("heading", name="No endpoints yet")).to_be_visible()


def test_rotate_with_an_overlap_see_when_it_ends_and_end_it_early(signed_in, workspace):
    endpoint, old = endpoint_create(
        workspace=workspace, url="https://hooks.example.com/in", event_types=["task.created"]
    )
    signed_in.goto(f"{BASE}{endpoint.id}/")
    signed_in.get_by_role("link", name="Rotate secret").click()
    expect(signed_in.get_by_label("24 hours")).to_be_checked()  # the default
    signed_in.get_by_label("7 days").check()
    signed_in.get_by_role("button", name="Rotate secret").click()

    # The new secret, once, and when the old one stops signing.
    expect(signed_in.get_by_text("It will not be shown again")).to_be_visible()
    new = signed_in.get_by_label("Signing secret").input_value()
    stored = Endpoint.objects.get(id=endpoint.id)
    assert new == stored.secret != old
    ends = stored.previous_secret_expires_at.strftime("%Y-%m-%d %H:%M")
    assert stored.previous_secret_expires_at - timezone.now() > timedelta(days=6, hours=23)
    expect(signed_in.locator("#overlap")).to_contain_text(f"Until {ends} UTC the previous secret signs deliveries too")

    # The endpoint's page says it too, and ends it early after a confirmation.
    signed_in.get_by_role("link", name="Go to the endpoint").click()
    overlap = signed_in.locator("#overlap")
    expect(overlap).to_contain_text(f"Overlap: the previous secret also signs deliveries until {ends} UTC")
    overlap.get_by_role("link", name="End overlap now").click()
    expect(signed_in.get_by_role("heading", name="End the overlap now?")).to_be_visible()
    assert Endpoint.objects.get(id=endpoint.id).previous_secret == old  # nothing changes before the POST
    signed_in.get_by_role("button", name="End overlap now").click()
    expect(signed_in.get_by_text("Overlap ended: deliveries are signed with the current secret only.")).to_be_visible()
    expect(signed_in.locator("#overlap")).to_have_count(0)
    assert Endpoint.objects.get(id=endpoint.id).secrets_valid(at=timezone.now()) == [new]
