"""Who may do what: the isolation matrix and the role matrix over every route."""

import pytest
from rest_framework.test import APIClient

from clientflow_webhooks.models import Membership, Workspace
from deliveries.models import Delivery, Event
from deliveries.services import event_publish
from endpoints.models import Endpoint, EndpointAuditEntry
from tests.conftest import example, make_user


@pytest.fixture
def other(db):
    """Workspace B with its own endpoint, delivery and audit trail."""
    workspace = Workspace.objects.create(slug="beta", name="Beta Studio")
    owner = make_user("bob", workspace, Membership.Role.OWNER)
    from endpoints.services import endpoint_create

    endpoint, secret = endpoint_create(
        workspace=workspace, url="https://beta.example.com/hook", event_types=["invoice.paid"], actor=owner
    )
    event = event_publish(
        workspace=workspace, event_type="invoice.paid", data=example("invoice.paid", invoice_id="inv_b1")
    )
    return {"workspace": workspace, "endpoint": endpoint, "secret": secret, "delivery": event.deliveries.get()}


def routes(slug: str, endpoint_id: int, delivery_id) -> list[tuple[str, str, dict | None]]:
    base = f"/api/v1/workspaces/{slug}"
    e = f"{base}/endpoints/{endpoint_id}"
    return [
        ("get", f"{base}/endpoints/", None),
        ("post", f"{base}/endpoints/", {"url": "https://x.example.com/", "event_types": ["invoice.paid"]}),
        ("get", f"{e}/", None),
        ("patch", f"{e}/", {"description": "changed"}),
        ("post", f"{e}/disable/", None),
        ("post", f"{e}/enable/", None),
        ("post", f"{e}/test/", None),
        ("post", f"{e}/rotate-secret/", None),
        ("get", f"{e}/audit/", None),
        ("get", f"{base}/deliveries/", None),
        ("get", f"{base}/deliveries/{delivery_id}/", None),
        ("delete", f"{e}/", None),  # last: the others need the endpoint
    ]


def snapshot():
    return (
        list(Endpoint.objects.order_by("id").values()),
        list(Delivery.objects.order_by("id").values()),
        Event.objects.count(),
        EndpointAuditEntry.objects.count(),
    )


@pytest.mark.parametrize("auth", ["token", "session"])
def test_a_member_of_a_cannot_see_or_touch_anything_of_b(workspace, other, auth):
    member_of_a = make_user("alice", workspace, Membership.Role.OWNER)
    client = APIClient()
    if auth == "token":
        from rest_framework.authtoken.models import Token

        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=member_of_a).key}")
    else:
        client.force_login(member_of_a)
    before = snapshot()
    for method, url, body in routes("beta", other["endpoint"].id, other["delivery"].id):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json() == {"detail": "Not found."}, (method, url)
        assert "beta.example.com" not in response.content.decode()
    # A workspace that does not exist answers exactly the same.
    for method, url, body in routes("nowhere", other["endpoint"].id, other["delivery"].id):
        response = getattr(client, method)(url, body, format="json")
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."}), (method, url)
    assert snapshot() == before


def test_an_endpoint_of_b_is_not_reachable_through_a(workspace, other, api):
    owner_of_a = Membership.objects.get(workspace=workspace).user
    client = api.as_user(owner_of_a)
    before = snapshot()
    objects_of_b = (f"/endpoints/{other['endpoint'].id}/", f"/deliveries/{other['delivery'].id}/")
    object_routes = [
        r for r in routes("acme", other["endpoint"].id, other["delivery"].id) if any(o in r[1] for o in objects_of_b)
    ]
    assert len(object_routes) == 9
    for method, url, body in object_routes:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url)
    assert snapshot() == before


def test_the_deliveries_filter_does_not_reach_other_workspaces(workspace, other, api):
    owner_of_a = Membership.objects.get(workspace=workspace).user
    response = api.as_user(owner_of_a).get(f"/api/v1/workspaces/acme/deliveries/?endpoint={other['endpoint'].id}")
    assert response.status_code == 200
    assert response.json()["results"] == []


WRITES = {"post-create", "patch", "delete", "disable", "enable", "test", "rotate"}


@pytest.fixture
def target(workspace, make_endpoint):
    endpoint, _ = make_endpoint()
    delivery = event_publish(
        workspace=workspace, event_type="invoice.paid", data=example("invoice.paid")
    ).deliveries.get()
    return endpoint, delivery


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("owner", "allowed"),
        ("admin", "allowed"),
        ("member", 403),
        ("outsider", 404),
        ("anonymous", 401),
    ],
)
@pytest.mark.parametrize("auth", ["token", "session"])
def test_role_matrix_over_every_write(workspace, target, api, role, expected, auth):
    endpoint, delivery = target
    user = None
    if role in ("owner", "admin", "member"):
        user = make_user(f"{role}-user", workspace, role)
    elif role == "outsider":
        user = make_user("outsider")
    if user is not None:
        api.as_user(user) if auth == "token" else api.force_login(user)
    writes = [r for r in routes("acme", endpoint.id, delivery.id) if r[0] != "get"]
    assert len(writes) == len(WRITES)
    for method, url, body in writes:
        before = snapshot()
        response = getattr(api, method)(url, body, format="json")
        if expected == "allowed":
            assert response.status_code in (200, 201, 202, 204), (method, url, response.content)
            assert snapshot() != before, (method, url)  # the write happened
        else:
            assert response.status_code == expected, (method, url, response.status_code)
            assert "detail" in response.json()
            assert snapshot() == before, (method, url)
    if expected == 401:
        assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_every_member_may_read(workspace, target, api, role):
    endpoint, delivery = target
    api.as_user(make_user(f"{role}-user", workspace, role))
    for method, url, _ in routes("acme", endpoint.id, delivery.id):
        if method == "get":
            assert api.get(url).status_code == 200, url


def test_anonymous_reads_get_401(workspace, target, api):
    endpoint, delivery = target
    for method, url, _ in routes("acme", endpoint.id, delivery.id):
        if method == "get":
            assert api.get(url).status_code == 401, url


def test_throttling_never_comes_before_the_404_or_the_403(workspace, target, api, settings):
    settings.WEBHOOKS_TEST_EVENT_RATE = "2/minute"
    endpoint, _ = target
    url = f"/api/v1/workspaces/acme/endpoints/{endpoint.id}/test/"
    api.as_user(make_user("outsider"))
    assert [api.post(url).status_code for _ in range(4)] == [404] * 4
    api.as_user(make_user("mia", workspace, Membership.Role.MEMBER))
    assert [api.post(url).status_code for _ in range(4)] == [403] * 4
    api.as_user(Membership.objects.get(workspace=workspace, role="owner").user)
    assert [api.post(url).status_code for _ in range(3)] == [202, 202, 429]
