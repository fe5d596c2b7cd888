"""The event-type catalogue: a JSON Schema and an example for each type's `data`, and
`event_publish` holding ClientFlow's code to them in development and tests."""

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator

from deliveries import services
from deliveries.models import Event
from endpoints import event_types as catalogue
from tests.conftest import example
from tests.services import ROOT

ALL = list(catalogue.BY_NAME.values())


@pytest.mark.parametrize("event_type", ALL, ids=lambda t: t.name)
def test_each_schema_is_valid_and_accepts_its_example(event_type):
    Draft202012Validator.check_schema(event_type.schema)
    assert event_type.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert catalogue.data_errors(event_type=event_type.name, data=event_type.example) == []


@pytest.mark.parametrize("event_type", ALL, ids=lambda t: t.name)
def test_each_schema_documents_every_field_and_rejects_undocumented_ones(event_type):
    schema = event_type.schema
    assert set(schema["required"]) == set(schema["properties"]) == set(event_type.example)
    assert catalogue.data_errors(event_type=event_type.name, data={**event_type.example, "surprise": 1}) == [
        "Additional properties are not allowed ('surprise' was unexpected)"
    ]


@pytest.mark.parametrize(
    ("event_type", "changes", "problem"),
    [
        ("invoice.paid", {"amount": -1}, "amount: -1 is less than the minimum of 0"),
        ("invoice.paid", {"amount": "1200.00"}, "amount: '1200.00' is not of type 'integer'"),
        ("invoice.paid", {"currency": "eur"}, "currency: 'eur' does not match '^[A-Z]{3}$'"),
        ("invoice.paid", {"client": {"id": "cli_1"}}, "client: 'name' is a required property"),
        ("invoice.paid", {"paid_at": "2026-04-26 12:00"}, "paid_at: '2026-04-26 12:00' does not match"),
        ("invoice.overdue", {"due_on": "2026-02-30"}, "due_on: '2026-02-30' is not a 'date'"),
        ("task.updated", {"changed": []}, "changed: [] should be non-empty"),
        ("task.updated", {"changed": ["colour"]}, "changed[0]: 'colour' is not one of"),
        ("client.created", {"email": "no-at-sign"}, "email: 'no-at-sign' is not a 'email'"),
        ("team.member_added", {"role": "boss"}, "role: 'boss' is not one of ['owner', 'admin', 'member']"),
    ],
)
def test_a_wrong_field_is_named_with_its_path(event_type, changes, problem):
    [message] = catalogue.data_errors(event_type=event_type, data=example(event_type, **changes))
    assert message.startswith(problem)


def test_nullable_fields_accept_null():
    for event_type, field in [("project.created", "client"), ("task.created", "assignee"), ("client.created", "email")]:
        assert catalogue.data_errors(event_type=event_type, data=example(event_type, **{field: None})) == []


def test_publish_refuses_data_that_does_not_match_its_schema_and_writes_nothing(workspace, make_endpoint):
    make_endpoint()
    with pytest.raises(ValidationError) as info:
        services.event_publish(workspace=workspace, event_type="invoice.paid", data={"invoice_id": "inv_1", "n": 1})
    messages = info.value.message_dict["data"]
    assert "'number' is a required property" in messages
    assert "Additional properties are not allowed ('n' was unexpected)" in messages
    assert not Event.objects.exists()


def test_in_bulk_one_bad_event_refuses_them_all(workspace, make_endpoint):
    make_endpoint()
    good, bad = example("invoice.paid"), example("invoice.paid", amount=-5)
    with pytest.raises(ValidationError, match="amount: -5 is less than the minimum of 0"):
        services.events_publish(workspace=workspace, event_type="invoice.paid", data_list=[good, bad])
    assert not Event.objects.exists()


def test_without_validation_as_in_production_any_json_object_is_published(workspace, settings):
    settings.WEBHOOKS_VALIDATE_EVENT_DATA = False
    event = services.event_publish(workspace=workspace, event_type="invoice.paid", data={"n": 1})
    assert json.loads(event.payload)["data"] == {"n": 1}


@pytest.mark.parametrize(("debug", "expected"), [("true", "True"), ("false", "False")])
def test_validation_is_on_by_default_only_in_development(debug, expected):
    environment = {k: v for k, v in os.environ.items() if k != "WEBHOOKS_VALIDATE_EVENT_DATA"}
    out = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.WEBHOOKS_VALIDATE_EVENT_DATA)"],
        env={**environment, "DEBUG": debug, "DJANGO_SETTINGS_MODULE": "clientflow_webhooks.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


def test_send_test_event_sends_the_documented_example_for_its_endpoint(workspace, make_endpoint):
    endpoint, _ = make_endpoint()
    delivery = services.send_test_event(endpoint=endpoint)
    data = json.loads(delivery.event.payload)["data"]
    assert data == {**catalogue.TEST_EVENT.example, "endpoint_id": endpoint.id}
    assert catalogue.data_errors(event_type="webhook.test", data=data) == []
