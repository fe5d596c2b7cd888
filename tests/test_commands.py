import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from clientflow_webhooks.models import Membership, Workspace
from deliveries.models import Delivery, Event
from tests.conftest import example


def test_create_workspace_makes_the_user_its_owner(owner, capsys):
    call_command("create_workspace", "studio", "--name", "Studio", "--owner", "olivia")
    workspace = Workspace.objects.get(slug="studio")
    assert workspace.name == "Studio"
    assert Membership.objects.get(workspace=workspace).role == "owner"
    assert "Created workspace studio" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad slug!", "--name", "X", "--owner", "olivia"], "slug:"),
        (["acme", "--name", "X", "--owner", "olivia"], "already exists"),
        (["new", "--name", " ", "--owner", "olivia"], "name: A name is required."),
        (["new", "--name", "X", "--owner", "nobody"], "No user named 'nobody'"),
        (["a" * 65, "--name", "X", "--owner", "olivia"], "at most 64 characters"),
        (["new", "--name", "N" * 201, "--owner", "olivia"], "at most 200 characters"),
    ],
)
def test_create_workspace_rejects_bad_input_and_writes_nothing(workspace, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_workspace", *args)
    assert list(Workspace.objects.values_list("slug", flat=True)) == ["acme"]


def test_publish_event_records_an_event_and_its_deliveries(workspace, make_endpoint, capsys):
    make_endpoint(event_types=["task.completed"])
    data = example("task.completed")
    call_command("publish_event", "acme", "task.completed", "--data", json.dumps(data))
    event = Event.objects.get()
    assert (event.type, event.data) == ("task.completed", data)
    assert Delivery.objects.filter(event=event).count() == 1
    assert f"Published {event.id} (task.completed) to 1 endpoint(s)." in capsys.readouterr().out


def test_publish_event_can_send_the_documented_example(workspace, make_endpoint):
    make_endpoint()
    call_command("publish_event", "acme", "invoice.paid", "--example")
    assert Event.objects.get().data == example("invoice.paid")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere", "invoice.paid"], "No workspace with the slug 'nowhere'"),
        (["acme", "invoice.paid", "--data", "{not json"], "--data is not valid JSON"),
        (["acme", "invoice.paid", "--data", "[1, 2]"], "data: Event data must be a JSON object."),
        (["acme", "invoice.lost"], "event_type: Unknown event type: invoice.lost."),
        (["acme", "webhook.test"], "sent only by Send Test Event"),
        (["acme", "webhook.test", "--example"], "sent only by Send Test Event"),
        (["acme", "invoice.paid", "--data", '{"invoice_id": "inv_1"}'], "data: 'number' is a required property"),
    ],
)
def test_publish_event_rejects_bad_input_and_writes_nothing(workspace, make_endpoint, args, message):
    make_endpoint()
    with pytest.raises(CommandError, match=message):
        call_command("publish_event", *args)
    assert not Event.objects.exists()


def test_demo_refuses_without_debug(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="only with DEBUG"):
        call_command("demo")
    assert not get_user_model().objects.exists()


def test_demo_creates_the_workspace_and_owner_once(db, settings):
    settings.DEBUG = True
    call_command("demo")
    call_command("demo")
    user = get_user_model().objects.get(username="demo")
    assert user.check_password("demo")
    assert Membership.objects.get(user=user).workspace.slug == "demo"


def test_add_member_adds_and_changes_roles(workspace, capsys):
    get_user_model().objects.create_user(username="mia")
    call_command("add_member", "acme", "mia", "--role", "member")
    call_command("add_member", "acme", "mia", "--role", "admin")
    assert Membership.objects.get(user__username="mia").role == "admin"
    assert "mia is now admin of acme." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere", "olivia", "--role", "member"], "No workspace with the slug 'nowhere'"),
        (["acme", "nobody", "--role", "member"], "No user named 'nobody'"),
    ],
)
def test_add_member_rejects_bad_input(workspace, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("add_member", *args)
    assert Membership.objects.count() == 1


def test_add_member_rejects_an_unknown_role(workspace):
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("add_member", "acme", "olivia", "--role", "king")
