import re

import pytest
from jsonschema import Draft202012Validator

from deliveries.models import Delivery
from deliveries.services import event_publish
from endpoints.event_types import BY_NAME
from endpoints.models import Endpoint, EndpointAuditEntry
from endpoints.services import endpoint_create
from tests.conftest import example

BASE = "/api/v1/workspaces/acme/endpoints/"
GOOD = {"url": "https://hooks.example.com/in", "event_types": ["invoice.paid", "task.created"], "description": "CRM"}


@pytest.fixture
def client(api, owner, workspace):
    return api.as_user(owner)


def create(client, **overrides):
    return client.post(BASE, {**GOOD, **overrides}, format="json")


def test_event_types_lists_the_catalogue_without_webhook_test(api, db):
    body = api.get("/api/v1/event-types/").json()
    names = [t["name"] for t in body]
    assert len(names) == 13
    assert "webhook.test" not in names
    paid = next(t for t in body if t["name"] == "invoice.paid")
    assert (paid["description"], paid["group"]) == ("An invoice was paid in full.", "invoice")
    assert {t["group"] for t in body} == {"project", "task", "client", "invoice", "team"}


def test_event_types_carry_the_schema_and_example_of_their_data(api, db):
    body = api.get("/api/v1/event-types/").json()
    for served in body:
        catalogued = BY_NAME[served["name"]]
        assert served["schema"] == catalogued.schema
        assert served["example"] == catalogued.example
        Draft202012Validator(served["schema"]).validate(served["example"])
    paid = next(t for t in body if t["name"] == "invoice.paid")
    assert paid["schema"]["required"] == ["invoice_id", "number", "amount", "currency", "client", "paid_at", "method"]


def test_create_returns_201_with_the_secret_once(client):
    response = create(client)
    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", body["secret"])
    assert body["url"] == GOOD["url"]
    assert body["event_types"] == ["invoice.paid", "task.created"]
    assert body["enabled"] is True
    assert (body["deliveries_24h"], body["success_rate_24h"], body["last_delivery_status"]) == (0, None, None)
    assert Endpoint.objects.get(id=body["id"]).secret == body["secret"]
    detail = client.get(f"{BASE}{body['id']}/").json()
    assert "secret" not in detail
    assert "secret" not in client.get(BASE).json()[0]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"url": "http://hooks.example.com/in"}, "url", "HTTPS is required."),
        ({"url": "not a url"}, "url", "Enter a valid URL, such as https://example.com/webhooks."),
        ({"url": ""}, "url", "This field may not be blank."),
        ({"event_types": []}, "event_types", "Choose at least one event type."),
        ({"event_types": ["invoice.lost"]}, "event_types", "Unknown event type: invoice.lost."),
        ({"event_types": ["webhook.test"]}, "event_types", None),
        ({"event_types": "invoice.paid"}, "event_types", "Expected a list of event type names."),
        ({"event_types": [1, 2]}, "event_types", "Expected a list of event type names."),
        ({"description": "d" * 501}, "description", None),
    ],
)
def test_bad_input_is_400_on_the_field_and_writes_nothing(client, overrides, field, message):
    response = create(client, **overrides)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    if message:
        assert body[field] == [message]
    assert not Endpoint.objects.exists()
    assert not EndpointAuditEntry.objects.exists()


def test_missing_fields_are_named(client):
    response = client.post(BASE, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"url", "event_types"}


def test_malformed_json_is_400_with_detail(client):
    response = client.post(BASE, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_patch_changes_url_and_event_types_and_keeps_the_secret(client):
    created = create(client).json()
    response = client.patch(
        f"{BASE}{created['id']}/",
        {"url": "https://new.example.com/in", "event_types": ["team.member_added"]},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["url"], body["event_types"]) == ("https://new.example.com/in", ["team.member_added"])
    assert "secret" not in body
    assert Endpoint.objects.get(id=created["id"]).secret == created["secret"]


def test_patch_with_http_is_400_and_changes_nothing(client):
    created = create(client).json()
    response = client.patch(
        f"{BASE}{created['id']}/", {"url": "http://new.example.com/", "description": "x"}, format="json"
    )
    assert (response.status_code, response.json()) == (400, {"url": ["HTTPS is required."]})
    endpoint = Endpoint.objects.get(id=created["id"])
    assert (endpoint.url, endpoint.description) == (GOOD["url"], "CRM")


def test_disable_twice_then_enable_keeps_the_secret(client):
    created = create(client).json()
    url = f"{BASE}{created['id']}/"
    assert client.post(url + "disable/").json()["enabled"] is False
    assert client.post(url + "disable/").status_code == 200
    assert client.post(url + "enable/").json()["enabled"] is True
    assert Endpoint.objects.get(id=created["id"]).secret == created["secret"]
    actions = list(EndpointAuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["created", "disabled", "enabled"]


def test_send_test_event_returns_the_delivery_even_when_disabled(client):
    created = create(client).json()
    client.post(f"{BASE}{created['id']}/disable/")
    response = client.post(f"{BASE}{created['id']}/test/")
    assert response.status_code == 202
    body = response.json()
    assert (body["event_type"], body["endpoint"], body["status"]) == ("webhook.test", created["id"], "pending")
    assert Delivery.objects.get(id=body["id"]).event.type == "webhook.test"


def test_send_test_event_is_throttled(client, settings):
    settings.WEBHOOKS_TEST_EVENT_RATE = "3/minute"
    created = create(client).json()
    codes = [client.post(f"{BASE}{created['id']}/test/").status_code for _ in range(5)]
    assert codes == [202, 202, 202, 429, 429]
    assert Delivery.objects.count() == 3


def test_rotate_secret_returns_a_new_secret_in_that_response_only(client):
    created = create(client).json()
    response = client.post(f"{BASE}{created['id']}/rotate-secret/")
    assert response.status_code == 200
    new = response.json()["secret"]
    assert new != created["secret"] and new.startswith("whsec_")
    assert Endpoint.objects.get(id=created["id"]).secret == new
    assert "secret" not in client.get(f"{BASE}{created['id']}/").json()


def test_delete_keeps_deliveries_as_history(client, workspace):
    created = create(client).json()
    delivery = event_publish(
        workspace=workspace, event_type="invoice.paid", data=example("invoice.paid")
    ).deliveries.get()
    assert client.delete(f"{BASE}{created['id']}/").status_code == 204
    assert client.get(f"{BASE}{created['id']}/").status_code == 404
    delivery.refresh_from_db()
    assert delivery.endpoint_id is None
    assert client.get(f"/api/v1/workspaces/acme/deliveries/{delivery.id}/").json()["endpoint"] is None
    trail = client.get(f"{BASE}{created['id']}/audit/").json()["results"]
    assert [e["action"] for e in trail] == ["deleted", "created"]


def test_audit_records_every_change_with_who_and_when(client, owner):
    created = create(client).json()
    url = f"{BASE}{created['id']}/"
    client.patch(url, {"description": "Billing"}, format="json")
    client.patch(url, {"description": "Billing"}, format="json")  # no change, no entry
    client.post(url + "disable/")
    client.post(url + "enable/")
    client.post(url + "rotate-secret/")
    entries = client.get(url + "audit/").json()["results"]
    assert [e["action"] for e in entries] == ["secret_rotated", "enabled", "disabled", "updated", "created"]
    assert {e["actor"] for e in entries} == {owner.username}
    assert entries[3]["changes"] == {"description": ["CRM", "Billing"]}
    assert all(e["created_at"] for e in entries)
    assert created["secret"] not in str(entries)


def test_health_figures_count_the_last_24_hours(client, workspace):
    created = create(client).json()
    event_ids = [
        event_publish(workspace=workspace, event_type="invoice.paid", data=example("invoice.paid")).id for _ in range(4)
    ]
    deliveries = Delivery.objects.filter(event_id__in=event_ids).order_by("created_at")
    statuses = ["succeeded", "succeeded", "exhausted", "pending"]
    for delivery, status in zip(deliveries, statuses, strict=True):
        Delivery.objects.filter(id=delivery.id).update(status=status)
    body = client.get(f"{BASE}{created['id']}/").json()
    assert body["deliveries_24h"] == 4
    assert body["success_rate_24h"] == pytest.approx(2 / 3, abs=1e-4)
    assert body["last_delivery_status"] == "pending"
    assert body["last_delivery_at"] is not None


def test_the_secret_appears_only_in_create_and_rotate_responses(client, workspace):
    bodies: list[tuple[str, str]] = []

    def call(method, url, data=None):
        response = getattr(client, method)(url, data, format="json")
        bodies.append((f"{method} {url}", response.content.decode()))
        return response

    created = call("post", BASE, GOOD).json()
    url = f"{BASE}{created['id']}/"
    call("get", BASE)
    call("get", url)
    call("patch", url, {"url": "https://other.example.com/in", "event_types": ["invoice.paid"]})
    call("post", url + "disable/")
    call("post", url + "enable/")
    delivery = call("post", url + "test/").json()
    event_publish(workspace=workspace, event_type="invoice.paid", data=example("invoice.paid"))
    call("get", "/api/v1/workspaces/acme/deliveries/")
    call("get", f"/api/v1/workspaces/acme/deliveries/{delivery['id']}/")
    call("get", url + "audit/")
    call("get", "/api/v1/event-types/")
    call("get", "/api/v1/schema/")
    rotated = call("post", url + "rotate-secret/").json()
    call("get", url)
    call("get", BASE)

    def holders(secret):
        return [name for name, body in bodies if secret in body]

    assert holders(created["secret"]) == [f"post {BASE}"]
    assert holders(rotated["secret"]) == [f"post {url}rotate-secret/"]


def test_ids_beyond_a_bigint_are_404_not_500(client):
    assert client.get(f"{BASE}{2**64}/").status_code == 404
    assert client.get(f"/api/v1/workspaces/acme/deliveries/?endpoint={2**64}").status_code == 400


def test_endpoints_list_shows_only_this_workspace(client, workspace, db):
    from clientflow_webhooks.models import Workspace

    other = Workspace.objects.create(slug="beta", name="Beta")
    endpoint_create(workspace=other, url="https://beta.example.com/", event_types=["invoice.paid"])
    create(client)
    assert [e["url"] for e in client.get(BASE).json()] == [GOOD["url"]]


def test_unknown_audit_trail_is_404(client):
    assert client.get(f"{BASE}12345/audit/").status_code == 404


def test_surrogates_in_event_types_are_400_not_500(client):
    response = client.post(
        BASE, '{"url": "https://ex.example.com/", "event_types": ["\\ud800"]}', content_type="application/json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["event_types"]


def test_only_json_bodies_are_accepted_and_errors_stay_json(client):
    form = client.post(
        BASE, "url=https://ex.example.com/&event_types=invoice.paid", content_type="application/x-www-form-urlencoded"
    )
    assert form.status_code == 415
    assert "detail" in form.json()
    many = client.post(BASE, "&".join(f"f{i}=1" for i in range(1200)), content_type="application/x-www-form-urlencoded")
    assert many.status_code == 415 and many["Content-Type"] == "application/json"
    html = client.get(BASE, HTTP_ACCEPT="text/html")
    assert html.status_code == 406
    assert html.json() == {"detail": "Could not satisfy the request Accept header."}
    assert not Endpoint.objects.exists()


def test_a_bad_token_is_401_even_on_the_public_catalogue(api, db):
    api.credentials(HTTP_AUTHORIZATION="Token nope")
    assert api.get("/api/v1/event-types/").status_code == 401


def test_the_endpoint_limit_is_a_400_with_a_message(client, settings):
    settings.WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE = 1
    assert create(client).status_code == 201
    response = create(client, url="https://second.example.com/in")
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["A workspace can have at most 1 endpoints. Delete one to add another."]
    }
    assert Endpoint.objects.count() == 1
