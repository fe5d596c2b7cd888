"""What every API view shares: workspace scoping, roles, errors and their schema."""

from datetime import UTC
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, exception_handler

from .models import Membership, Workspace
from .selectors import membership_for

NON_FIELD_ERRORS_KEY = api_settings.NON_FIELD_ERRORS_KEY


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Services raise Django's ValidationError; answer it as DRF does its own: 400, by field."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            errors = {NON_FIELD_ERRORS_KEY if k == NON_FIELD_ERRORS else k: v for k, v in exc.message_dict.items()}
        else:
            errors = {NON_FIELD_ERRORS_KEY: exc.messages}
        exc = DRFValidationError(errors)
    return exception_handler(exc, context)


class TimeCursorPagination(CursorPagination):
    """Cursor pages ordered by a creation time: stable while rows arrive, no count of a
    large table. A cursor is client input: its position must be a real time, handed to
    the database in UTC, or the answer is 404 "Invalid cursor", never a 500."""

    page_size = 50

    def decode_cursor(self, request: Request) -> Cursor | None:
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        position = parse_datetime(cursor.position) if isinstance(cursor.position, str) else None
        try:
            if position is None or position.tzinfo is None:
                raise ValueError
            position = position.astimezone(UTC)
        except (ValueError, OverflowError):
            raise NotFound(self.invalid_cursor_message) from None
        return Cursor(offset=cursor.offset, reverse=cursor.reverse, position=position.isoformat())


class WorkspaceAPIView(APIView):
    """Base of everything under ``/api/v1/workspaces/<slug>/``.

    A user who is not a member gets 404, exactly as for a workspace that does not exist.
    Members may read; writes need an owner or an admin (403 otherwise).
    """

    permission_classes = [IsAuthenticated]
    membership: Membership
    workspace: Workspace

    def check_permissions(self, request: Request) -> None:
        # Here rather than in initial(): DRF checks permissions before throttles, so an
        # outsider always gets 404 and a member 403, and neither spends anyone's quota.
        super().check_permissions(request)
        membership = membership_for(user=request.user, slug=self.kwargs["slug"])
        if membership is None:
            raise NotFound()
        if request.method not in SAFE_METHODS and not membership.can_manage_webhooks:
            raise PermissionDenied("Only the workspace's owners and admins can change webhooks.")
        self.membership = membership
        self.workspace = membership.workspace


# --- error responses, for the schema ------------------------------------------

_Detail = inline_serializer("ErrorDetail", fields={"detail": serializers.CharField()})


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=_Detail, description=description)


ERRORS_READ = {
    401: error_response("Not authenticated, or the token is not valid."),
    404: error_response("No such workspace or object, or the user is not a member of the workspace."),
    406: error_response("The Accept header asks for something other than JSON."),
}
ERRORS_WRITE = {
    **ERRORS_READ,
    403: error_response("The user is a member but not an owner or admin of the workspace."),
    415: error_response("The body is not JSON (Content-Type: application/json)."),
}
# DRF answers 400 with messages by field, or with {"detail": …} for a body it cannot parse.
VALIDATION_ERROR = OpenApiResponse(
    response={
        "type": "object",
        "additionalProperties": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
    },
    description='Invalid input: messages by field, e.g. `{"url": ["HTTPS is required."]}`.',
)
