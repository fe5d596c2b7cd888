"""The catalogue of event types: the one place that says what can be delivered.

Each type documents the shape of its event's `data` as a JSON Schema (draft 2020-12) and
gives an example that validates against it. The API serves both
(`GET /api/v1/event-types/`), docs/receiving.md shows the examples, Send Test Event sends
the example of `webhook.test`, and `event_publish` checks what it is given against the
schema when WEBHOOKS_VALIDATE_EVENT_DATA is on (development and tests).
"""

import functools
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    # The JSON Schema of the event's `data`, and a `data` that it accepts.
    schema: dict[str, Any] = field(repr=False, compare=False)
    example: dict[str, Any] = field(repr=False, compare=False)

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]


# --- pieces of the schemas --------------------------------------------------------


def _object(description: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all required (`null` where a value may be
    absent), so that every field ClientFlow sends is documented."""
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _id(prefix: str, what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{prefix}_[A-Za-z0-9]+$", "description": f"The {what}'s id."}


def _text(description: str, *, nullable: bool = False) -> dict[str, Any]:
    return {"type": ["string", "null"] if nullable else "string", "description": description}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _changed(*names: str) -> dict[str, Any]:
    return {
        "type": "array",
        "description": "The fields that changed.",
        "items": {"type": "string", "enum": list(names)},
        "minItems": 1,
        "uniqueItems": True,
    }


TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    # The same form as the envelope's created_at.
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
    "description": "UTC, with milliseconds: 2026-04-26T12:00:00.000Z.",
}
DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "A day: 2026-05-31."}
AMOUNT = {
    "type": "integer",
    "minimum": 0,
    "description": "In the currency's minor unit (cents for EUR): 125000 is 1,250.00.",
}
CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code."}
CLIENT = _object("The client.", id=_id("cli", "client"), name=_text("The client's name."))
PROJECT = _object("The project.", id=_id("prj", "project"), name=_text("The project's name."))
PERSON = _object(
    "A person in the workspace.",
    id=_id("usr", "person"),
    name=_text("Their full name."),
    email={"type": "string", "format": "email", "description": "Their email address."},
)
ROLE = {"type": "string", "enum": ["owner", "admin", "member"], "description": "Their role in the workspace."}
INVOICE_ID = _id("inv", "invoice")
INVOICE_NUMBER = _text("The number printed on the invoice.")

_PROJECT_FIELDS = {
    "project_id": _id("prj", "project"),
    "name": _text("The project's name."),
    "client": _nullable(CLIENT),
}
_TASK_FIELDS = {
    "task_id": _id("tsk", "task"),
    "title": _text("The task's title."),
    "project": PROJECT,
    "assignee": _nullable(PERSON),
    "due_on": _nullable(DATE),
}
_CLIENT_FIELDS = {
    "client_id": _id("cli", "client"),
    "name": _text("The client's name."),
    "email": {"type": ["string", "null"], "format": "email", "description": "The client's billing email."},
}


def _event(name: str, description: str, properties: dict[str, Any], example: dict[str, Any]) -> EventType:
    schema = {"$schema": JSON_SCHEMA_DIALECT, "title": f"{name} data", **_object(description, **properties)}
    return EventType(name, description, schema, example)


# --- example values ----------------------------------------------------------------

_NORTHWIND = {"id": "cli_0007", "name": "Northwind Trading GmbH"}
_ZOE = {"id": "usr_0003", "name": "Zoë Adams", "email": "zoe@agency.example"}
_LAUNCH = {"id": "prj_0012", "name": "Website relaunch"}
_PROJECT_EXAMPLE = {"project_id": _LAUNCH["id"], "name": _LAUNCH["name"], "client": _NORTHWIND}
_TASK_EXAMPLE = {
    "task_id": "tsk_0481",
    "title": "Draft the home page copy",
    "project": _LAUNCH,
    "assignee": _ZOE,
    "due_on": "2026-05-08",
}
_CLIENT_EXAMPLE = {"client_id": _NORTHWIND["id"], "name": _NORTHWIND["name"], "email": "accounts@northwind.example"}
_INVOICE_EXAMPLE = {"invoice_id": "inv_00000042", "number": "2026-000042", "client": _NORTHWIND}

SUBSCRIBABLE: tuple[EventType, ...] = (
    _event(
        "project.created",
        "A project was created.",
        {**_PROJECT_FIELDS, "created_by": PERSON},
        {**_PROJECT_EXAMPLE, "created_by": _ZOE},
    ),
    _event(
        "project.updated",
        "A project's details changed.",
        {**_PROJECT_FIELDS, "changed": _changed("name", "client")},
        {**_PROJECT_EXAMPLE, "changed": ["name"]},
    ),
    _event(
        "project.deleted",
        "A project was deleted.",
        {**_PROJECT_FIELDS, "deleted_by": PERSON},
        {**_PROJECT_EXAMPLE, "deleted_by": _ZOE},
    ),
    _event("task.created", "A task was created.", _TASK_FIELDS, _TASK_EXAMPLE),
    _event(
        "task.updated",
        "A task's details changed.",
        {**_TASK_FIELDS, "changed": _changed("title", "project", "assignee", "due_on")},
        {**_TASK_EXAMPLE, "changed": ["assignee", "due_on"]},
    ),
    _event(
        "task.completed",
        "A task was marked complete.",
        {**_TASK_FIELDS, "completed_by": PERSON, "completed_at": TIMESTAMP},
        {**_TASK_EXAMPLE, "completed_by": _ZOE, "completed_at": "2026-05-07T16:42:10.500Z"},
    ),
    _event("client.created", "A client was added.", _CLIENT_FIELDS, _CLIENT_EXAMPLE),
    _event(
        "client.updated",
        "A client's details changed.",
        {**_CLIENT_FIELDS, "changed": _changed("name", "email")},
        {**_CLIENT_EXAMPLE, "changed": ["email"]},
    ),
    _event(
        "invoice.paid",
        "An invoice was paid in full.",
        {
            "invoice_id": INVOICE_ID,
            "number": INVOICE_NUMBER,
            "amount": AMOUNT,
            "currency": CURRENCY,
            "client": CLIENT,
            "paid_at": TIMESTAMP,
            "method": {"type": "string", "enum": ["bank_transfer", "card", "cash", "other"]},
        },
        {
            **_INVOICE_EXAMPLE,
            "amount": 125000,
            "currency": "EUR",
            "paid_at": "2026-04-26T12:00:00.000Z",
            "method": "bank_transfer",
        },
    ),
    _event(
        "invoice.overdue",
        "An invoice passed its due date unpaid.",
        {
            "invoice_id": INVOICE_ID,
            "number": INVOICE_NUMBER,
            "amount_due": AMOUNT,
            "currency": CURRENCY,
            "client": CLIENT,
            "due_on": DATE,
        },
        {**_INVOICE_EXAMPLE, "amount_due": 125000, "currency": "EUR", "due_on": "2026-04-15"},
    ),
    _event(
        "invoice.refunded",
        "A paid invoice was refunded.",
        {
            "invoice_id": INVOICE_ID,
            "number": INVOICE_NUMBER,
            "amount_refunded": AMOUNT,
            "currency": CURRENCY,
            "client": CLIENT,
            "refunded_at": TIMESTAMP,
        },
        {**_INVOICE_EXAMPLE, "amount_refunded": 25000, "currency": "EUR", "refunded_at": "2026-04-28T09:30:00.000Z"},
    ),
    _event(
        "team.member_added",
        "A person joined the workspace.",
        {"member": PERSON, "role": ROLE, "added_by": _nullable(PERSON)},
        {
            "member": _ZOE,
            "role": "member",
            "added_by": {"id": "usr_0001", "name": "Olivia Reyes", "email": "olivia@agency.example"},
        },
    ),
    _event(
        "team.member_removed",
        "A person left the workspace.",
        {"member": PERSON, "removed_by": _nullable(PERSON)},
        {"member": _ZOE, "removed_by": None},
    ),
)

# Sent only by "Send Test Event"; no endpoint can subscribe to it.
TEST_EVENT = _event(
    "webhook.test",
    "A synthetic event sent by Send Test Event.",
    {
        "message": _text("Says that this is a test."),
        "endpoint_id": {"type": "integer", "minimum": 1, "description": "The endpoint it was sent to."},
    },
    {"message": "This is a test event from ClientFlow.", "endpoint_id": 1},
)

SUBSCRIBABLE_NAMES: frozenset[str] = frozenset(t.name for t in SUBSCRIBABLE)
BY_NAME: dict[str, EventType] = {t.name: t for t in (*SUBSCRIBABLE, TEST_EVENT)}


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(BY_NAME[name].schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _where(path: Any) -> str:
    """`client.id`, `changed[0]`: where in `data` a problem is ("" for `data` itself)."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).removeprefix(".")


def data_errors(*, event_type: str, data: Any) -> list[str]:
    """What is wrong with `data` for `event_type` by its schema (empty when nothing is),
    one message per problem, each naming where in `data` it is: ``client.id: …``."""
    errors = sorted(_validator(event_type).iter_errors(data), key=lambda error: list(map(str, error.absolute_path)))
    return [
        f"{where}: {error.message}" if (where := _where(error.absolute_path)) else error.message for error in errors
    ]
