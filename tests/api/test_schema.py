"""Schemathesis against the live API (in-process WSGI): no 500 on any generated input,
and every response matches the OpenAPI schema, for a member and for an owner."""

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clientflow_webhooks.models import Membership
from deliveries.services import send_test_event
from tests.conftest import make_user

# Raise it for a longer hunt: SCHEMATHESIS_MAX_EXAMPLES=500 make test PYTEST_ARGS=tests/api/test_schema.py
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def schema(db):
    # The raw WSGI app closes the database connection after each request, which would
    # end the test's transaction; Django's own test client suspends that the same way.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def test_schema_is_served_and_documents_every_route(schema, api):
    paths = set(api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"])
    assert paths == {
        "/api/v1/event-types/",
        "/api/v1/workspaces/{slug}/endpoints/",
        "/api/v1/workspaces/{slug}/endpoints/{endpoint_id}/",
        "/api/v1/workspaces/{slug}/endpoints/{endpoint_id}/disable/",
        "/api/v1/workspaces/{slug}/endpoints/{endpoint_id}/enable/",
        "/api/v1/workspaces/{slug}/endpoints/{endpoint_id}/test/",
        "/api/v1/workspaces/{slug}/endpoints/{endpoint_id}/rotate-secret/",
        "/api/v1/workspaces/{slug}/endpoints/{endpoint_id}/end-overlap/",
        "/api/v1/workspaces/{slug}/endpoints/{endpoint_id}/audit/",
        "/api/v1/workspaces/{slug}/deliveries/",
        "/api/v1/workspaces/{slug}/deliveries/{delivery_id}/",
    }
    assert api.get("/api/v1/docs/").status_code == 200


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_get_no_500_and_conform_to_the_schema(
    schema, workspace, owner, make_endpoint, mode, settings
):
    settings.WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE = 10**6  # each example makes fresh endpoints
    member = make_user("mia", workspace, Membership.Role.MEMBER)
    tokens = [Token.objects.create(user=user).key for user in (member, owner)]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 14
    calls = {"count": 0, "statuses": set()}
    skipped: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
        @hypothesis_settings(
            max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case, real):
            for token in tokens:
                # Half the time, aim at this workspace's real objects (fresh for each user, so
                # the owner's DELETE cannot hide the member's 403) to exercise more than 404s.
                if real and case.path_parameters:
                    endpoint, _ = make_endpoint(url="https://fuzz.example.com/hook")
                    delivery = send_test_event(endpoint=endpoint)
                    case.path_parameters["slug"] = "acme"
                    if "endpoint_id" in case.path_parameters:
                        case.path_parameters["endpoint_id"] = endpoint.id
                    if "delivery_id" in case.path_parameters:
                        case.path_parameters["delivery_id"] = str(delivery.id)
                response = case.call(headers={"Authorization": f"Token {token}"})
                calls["count"] += 1
                calls["statuses"].add(response.status_code)
                case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # Some operations have no input that can be made invalid; which ones is pinned below.
            assert mode == GenerationMode.NEGATIVE
            skipped.append(f"{operation.method.upper()} {operation.path}")

    # Their only input is the workspace slug, which a URL pattern keeps valid.
    assert set(skipped) <= {"GET /api/v1/event-types/", "GET /api/v1/workspaces/{slug}/endpoints/"}
    assert calls["count"] >= 14 * 2
    # Both successes and refusals were exercised, not only one kind of answer.
    assert {200, 404} <= calls["statuses"]
    assert calls["statuses"] & {400, 403}
