"""Support's dead-letter queue in the admin, over HTTP with Django's test client."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt, DeliveryReplay
from deliveries.services import event_publish
from endpoints.services import endpoint_delete, endpoint_disable
from tests.conftest import example

CHANGELIST = reverse("admin:deliveries_deadletter_changelist")


def make_staff(username, *, group=None, superuser=False, perms=()):
    user = get_user_model().objects.create_user(username=username, password="pw", is_staff=True, is_superuser=superuser)
    if group:
        user.groups.add(Group.objects.get(name=group))
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def dead(workspace, make_endpoint):
    """Three dead letters on three endpoints: healthy, to be disabled, to be deleted."""
    endpoints = {}
    for name in ("healthy", "disabled", "deleted"):
        endpoints[name], _ = make_endpoint(url=f"https://{name}.example.com/hook")
    event = event_publish(workspace=workspace, event_type="invoice.paid", data=example("invoice.paid"))
    for delivery in event.deliveries.all():
        DeliveryAttempt.objects.create(
            delivery=delivery, number=1, started_at=timezone.now(), duration_ms=5, response_status=500,
            outcome="transient", error="",
        )  # fmt: skip
    event.deliveries.update(
        status="exhausted", attempt_count=4, last_status_code=500, last_error="HTTP 500", completed_at=timezone.now()
    )
    endpoint_disable(endpoint=endpoints["disabled"])
    deliveries = {name: Delivery.objects.get(endpoint=e) for name, e in endpoints.items()}
    endpoint_delete(endpoint=endpoints["deleted"])
    return deliveries


@pytest.fixture
def support(db):
    return make_staff("sam", group="Support")


def test_the_support_group_is_created_by_a_migration(db):
    perms = set(Group.objects.get(name="Support").permissions.values_list("codename", flat=True))
    assert {"replay_delivery", "view_deadletter", "view_delivery", "view_event", "view_endpoint"} <= perms
    assert not {p for p in perms if p.startswith(("change_", "delete_", "add_"))}


def test_dead_letters_list_shows_why_and_when_newest_first(client, support, dead):
    client.force_login(support)
    page = client.get(CHANGELIST).content.decode()
    for name in ("healthy", "disabled"):
        assert f"{name}.example.com" in page
    assert "(deleted)" in page
    assert "HTTP 500" in page and "invoice.paid" in page and "acme" in page
    assert "Replay the selected dead letters" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "exhausted"}, 3),
        ({"status__exact": "failed"}, 0),
        ({"workspace": "acme"}, 3),
        ({"event_type": "invoice.paid"}, 3),
        ({"event_type": "task.created"}, 0),
        ({"q": "healthy.example"}, 1),
    ],
)
def test_filters_and_search(client, support, dead, query, expected):
    client.force_login(support)
    response = client.get(CHANGELIST, query)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == expected


def test_search_by_delivery_id_and_event_id(client, support, dead):
    client.force_login(support)
    delivery = dead["healthy"]
    assert list(client.get(CHANGELIST, {"q": str(delivery.id)}).context["cl"].result_list) == [delivery]
    assert len(client.get(CHANGELIST, {"q": delivery.event_id}).context["cl"].result_list) == 3
    assert client.get(CHANGELIST, {"endpoint": str(delivery.endpoint_id)}).context["cl"].result_list[0] == delivery


def post_action(client, ids, action="replay"):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True)


def test_replay_many_replays_the_healthy_and_refuses_the_rest_saying_why(client, support, dead):
    client.force_login(support)
    response = post_action(client, [d.id for d in dead.values()])
    text = " ".join(str(m) for m in response.context["messages"])
    assert "Replayed 1 dead letter." in text
    assert "Refused 2:" in text
    assert "1 because its endpoint is disabled" in text
    assert "1 because its endpoint was deleted" in text
    healthy = Delivery.objects.get(id=dead["healthy"].id)
    assert (healthy.status, healthy.attempt_count, healthy.attempts_before_replay) == ("pending", 4, 4)
    assert healthy.attempts.count() == 1  # earlier attempts kept
    assert Delivery.objects.get(id=dead["disabled"].id).status == "exhausted"
    replay = DeliveryReplay.objects.get()
    assert (replay.delivery_id, replay.actor) == (healthy.id, support)
    # It left the dead-letter list while pending.
    assert str(healthy.id) not in client.get(CHANGELIST).content.decode()


def test_replay_one_from_its_page(client, support, dead):
    client.force_login(support)
    delivery = dead["healthy"]
    page = client.get(reverse("admin:deliveries_deadletter_change", args=[delivery.id])).content.decode()
    assert "Replay</button>" in page
    response = client.post(reverse("admin:deliveries_deadletter_replay", args=[delivery.id]), follow=True)
    assert "Replayed 1 dead letter." in " ".join(str(m) for m in response.context["messages"])
    assert Delivery.objects.get(id=delivery.id).status == "pending"
    history = client.get(reverse("admin:deliveries_delivery_change", args=[delivery.id])).content.decode()
    replays = history.split('id="replays-group"', 1)[1].split("</fieldset>", 1)[0]
    assert ">sam<" in replays  # the replay, with who did it, on the delivery's page
    # A GET of the button's URL changes nothing.
    client.get(reverse("admin:deliveries_deadletter_replay", args=[delivery.id]))
    assert DeliveryReplay.objects.count() == 1


def test_replay_all_dead_letters_of_an_endpoint_asks_with_the_count(client, support, dead, workspace):
    endpoint = dead["healthy"].endpoint
    client.force_login(support)
    url = reverse("admin:endpoints_endpoint_replay", args=[endpoint.id])
    confirm = client.get(url).content.decode()
    assert re.search(r'data-testid="replay-total">1<', confirm)
    assert Delivery.objects.get(id=dead["healthy"].id).status == "exhausted"  # asking changes nothing
    response = client.post(url, {"confirm": "yes"}, follow=True)
    assert "Replayed 1 dead letter." in " ".join(str(m) for m in response.context["messages"])
    assert Delivery.objects.get(id=dead["healthy"].id).status == "pending"


def test_the_endpoint_changelist_action_confirms_then_replays(client, support, dead):
    client.force_login(support)
    changelist = reverse("admin:endpoints_endpoint_changelist")
    ids = [str(dead["healthy"].endpoint_id), str(dead["disabled"].endpoint_id)]
    confirm = client.post(changelist, {"action": "replay_dead_letters", "_selected_action": ids})
    assert confirm.status_code == 200
    assert 'data-testid="replay-total">2<' in confirm.content.decode()
    done = client.post(
        changelist, {"action": "replay_dead_letters", "_selected_action": ids, "confirm": "yes"}, follow=True
    )
    text = " ".join(str(m) for m in done.context["messages"])
    assert "Replayed 1 dead letter." in text and "1 because its endpoint is disabled" in text


@pytest.mark.parametrize(
    ("who", "sees_replay", "can_replay"),
    [
        ("superuser", True, True),
        ("support", True, True),
        ("staff with view only", False, False),
    ],
)
def test_permission_matrix(client, dead, who, sees_replay, can_replay):
    if who == "superuser":
        user = make_staff("root", superuser=True)
    elif who == "support":
        user = make_staff("sam", group="Support")
    else:
        user = make_staff("vic", perms=["view_deadletter", "view_delivery", "view_endpoint"])
    client.force_login(user)
    page = client.get(CHANGELIST).content.decode()
    assert ("Replay the selected dead letters" in page) is sees_replay
    detail = client.get(reverse("admin:deliveries_deadletter_change", args=[dead["healthy"].id])).content.decode()
    assert ("Replay</button>" in detail) is sees_replay
    # A forged POST of the action and of the button.
    forged = post_action(client, [dead["healthy"].id])
    client.post(reverse("admin:deliveries_deadletter_replay", args=[dead["healthy"].id]), follow=True)
    replayed = Delivery.objects.get(id=dead["healthy"].id).status == "pending"
    assert replayed is can_replay
    if not can_replay:
        assert "You do not have permission to run that action" in " ".join(str(m) for m in forged.context["messages"])
        assert not DeliveryReplay.objects.exists()


def test_non_staff_cannot_open_the_admin(client, owner, dead):
    client.force_login(owner)
    assert client.get(CHANGELIST).status_code == 302


def test_history_is_read_only(client, support, dead):
    client.force_login(make_staff("root", superuser=True))
    delivery = dead["healthy"]
    for name in ("deadletter", "delivery"):
        page = client.get(reverse(f"admin:deliveries_{name}_change", args=[delivery.id])).content.decode()
        assert 'name="_save"' not in page
        assert client.get(reverse(f"admin:deliveries_{name}_delete", args=[delivery.id])).status_code == 403
    assert client.get(reverse("admin:deliveries_event_add")).status_code == 403


def test_no_admin_page_shows_a_secret(client, dead, workspace, make_endpoint):
    endpoint, secret = make_endpoint(url="https://secret-check.example.com/")
    client.force_login(make_staff("root", superuser=True))
    pages = [reverse("admin:index")]
    for model in ("deadletter", "delivery", "event", "deliveryattempt", "deliveryreplay"):
        try:
            pages.append(reverse(f"admin:deliveries_{model}_changelist"))
        except Exception:
            continue
    pages += [
        reverse("admin:endpoints_endpoint_changelist"),
        reverse("admin:endpoints_endpoint_change", args=[endpoint.id]),
        reverse("admin:endpoints_endpoint_replay", args=[endpoint.id]),
        reverse("admin:endpoints_endpointauditentry_changelist"),
        reverse("admin:clientflow_webhooks_workspace_change", args=[workspace.id]),
        reverse("admin:deliveries_delivery_change", args=[dead["healthy"].id]),
        reverse("admin:deliveries_deadletter_change", args=[dead["healthy"].id]),
        reverse("admin:endpoints_endpoint_history", args=[endpoint.id]),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert secret not in html, url
        assert secret.removeprefix("whsec_")[:16] not in html, url


def test_a_delivery_replayed_twice_at_once_is_replayed_once(support, dead):
    from deliveries.services import REFUSED_NOT_DEAD, delivery_replay

    stale = Delivery.objects.get(id=dead["healthy"].id)
    first = delivery_replay(deliveries=[stale], actor=support)
    second = delivery_replay(deliveries=[stale], actor=support)  # the same stale copy
    assert len(first.replayed) == 1
    assert second.replayed == [] and list(second.refused) == [REFUSED_NOT_DEAD]
    assert DeliveryReplay.objects.count() == 1


def test_ticked_rows_that_are_no_longer_dead_letters_are_refused_with_a_reason(client, support, dead):
    client.force_login(support)
    delivery = dead["healthy"]
    post_action(client, [delivery.id])
    again = post_action(client, [delivery.id])
    assert "1 because it is not a dead letter" in " ".join(str(m) for m in again.context["messages"])


def test_the_secret_cannot_be_probed_through_admin_filters(client, dead, make_endpoint):
    endpoint, secret = make_endpoint(url="https://probe.example.com/")
    client.force_login(make_staff("root", superuser=True))
    changelist = reverse("admin:endpoints_endpoint_changelist")
    for lookup in ("secret", "secret__startswith", "secret__contains"):
        response = client.get(changelist, {lookup: secret[:10]})
        assert response.status_code in (400, 302), lookup
        assert "probe.example.com" not in response.content.decode()
    assert client.get(reverse("admin:endpoints_endpoint_delete", args=[endpoint.id])).status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        {"endpoint": "²"},
        {"endpoint": "99999999999999999999999"},
        {"workspace": "a\x00"},
        {"event_type": "x\x00"},
        {"status__exact": "\x00"},
        {"q": "\x00"},
        {"q": "not-a-uuid"},
    ],
)
def test_odd_filter_values_never_break_the_list(client, support, dead, query):
    client.force_login(support)
    assert client.get(CHANGELIST, query).status_code in (200, 400)


def test_view_only_staff_cannot_replay_an_endpoint_either(client, dead):
    client.force_login(make_staff("vic", perms=["view_endpoint", "view_deadletter"]))
    endpoint = dead["healthy"].endpoint
    page = client.get(reverse("admin:endpoints_endpoint_change", args=[endpoint.id])).content.decode()
    assert "Replay dead letters" not in page
    client.post(reverse("admin:endpoints_endpoint_replay", args=[endpoint.id]), {"confirm": "yes"})
    client.post(
        reverse("admin:endpoints_endpoint_changelist"),
        {"action": "replay_dead_letters", "_selected_action": [str(endpoint.id)], "confirm": "yes"},
    )
    assert Delivery.objects.get(id=dead["healthy"].id).status == "exhausted"
    assert not DeliveryReplay.objects.exists()
