"""Settings → Webhooks API for endpoints. Thin: parse, call a service, render."""

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from clientflow_webhooks.api import (
    ERRORS_READ,
    ERRORS_WRITE,
    VALIDATION_ERROR,
    TimeCursorPagination,
    WorkspaceAPIView,
    error_response,
)
from clientflow_webhooks.parsing import MAX_ID
from deliveries.selectors import endpoints_with_health
from deliveries.serializers import DeliveryOutput
from deliveries.services import send_test_event

from . import event_types as catalogue
from . import services
from .models import Endpoint, EndpointAuditEntry
from .serializers import (
    AuditEntryOutput,
    EndpointInput,
    EndpointOutput,
    EndpointUpdateInput,
    EndpointWithSecretOutput,
    EventTypeOutput,
    RotateSecretInput,
)


class EventTypeListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="event_types_list",
        responses={200: EventTypeOutput(many=True), 401: ERRORS_READ[401], 406: ERRORS_READ[406]},
        description="The event types an endpoint can subscribe to, each with the JSON Schema of its `data` "
        "and an example. Public, like the receiving docs: no credentials needed (a token that is sent must be valid).",
    )
    def get(self, request: Request) -> Response:
        return Response(EventTypeOutput(catalogue.SUBSCRIBABLE, many=True).data)


class EndpointAPIView(WorkspaceAPIView):
    def endpoints(self) -> QuerySet[Endpoint]:
        return endpoints_with_health(endpoints=Endpoint.objects.filter(workspace=self.workspace))

    def get_endpoint(self, endpoint_id: int) -> Endpoint:
        endpoint = self.endpoints().filter(id=endpoint_id).first() if endpoint_id <= MAX_ID else None
        if endpoint is None:
            raise NotFound()
        return endpoint

    def render(self, endpoint_id: int, *, secret: str | None = None, code: int = status.HTTP_200_OK) -> Response:
        """The endpoint as it now is, read again so its figures are current."""
        endpoint = self.get_endpoint(endpoint_id)
        if secret is None:
            return Response(EndpointOutput(endpoint).data, status=code)
        endpoint.secret = secret
        return Response(EndpointWithSecretOutput(endpoint).data, status=code)


class EndpointListApi(EndpointAPIView):
    @extend_schema(
        operation_id="endpoints_list",
        responses={200: EndpointOutput(many=True), **ERRORS_READ},
        description="The workspace's endpoints with their health figures. Never their secrets.",
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(EndpointOutput(self.endpoints(), many=True).data)

    @extend_schema(
        operation_id="endpoints_create",
        request=EndpointInput,
        responses={201: EndpointWithSecretOutput, 400: VALIDATION_ERROR, **ERRORS_WRITE},
        description="Creates an endpoint. The response is the only one that ever carries its `secret`.",
    )
    def post(self, request: Request, slug: str) -> Response:
        data = EndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = services.endpoint_create(workspace=self.workspace, actor=request.user, **data.validated_data)
        return self.render(endpoint.id, secret=secret, code=status.HTTP_201_CREATED)


class EndpointDetailApi(EndpointAPIView):
    @extend_schema(
        operation_id="endpoints_retrieve",
        responses={200: EndpointOutput, **ERRORS_READ},
        description="One endpoint with its health figures. Never its secret.",
    )
    def get(self, request: Request, slug: str, endpoint_id: int) -> Response:
        return Response(EndpointOutput(self.get_endpoint(endpoint_id)).data)

    @extend_schema(
        operation_id="endpoints_update",
        request=EndpointUpdateInput,
        responses={200: EndpointOutput, 400: VALIDATION_ERROR, **ERRORS_WRITE},
        description="Changes the URL, description or event types. The secret stays the same.",
    )
    def patch(self, request: Request, slug: str, endpoint_id: int) -> Response:
        endpoint = self.get_endpoint(endpoint_id)
        data = EndpointUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.endpoint_update(endpoint=endpoint, actor=request.user, **data.validated_data)
        return self.render(endpoint.id)

    @extend_schema(
        operation_id="endpoints_destroy",
        responses={204: OpenApiResponse(description="Deleted; its deliveries stay as history."), **ERRORS_WRITE},
        description="Deletes the endpoint. Its deliveries and audit trail stay.",
    )
    def delete(self, request: Request, slug: str, endpoint_id: int) -> Response:
        services.endpoint_delete(endpoint=self.get_endpoint(endpoint_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointDisableApi(EndpointAPIView):
    @extend_schema(
        operation_id="endpoints_disable",
        request=None,
        responses={200: EndpointOutput, **ERRORS_WRITE},
        description="Pauses deliveries. The secret stays the same; disabling twice is harmless.",
    )
    def post(self, request: Request, slug: str, endpoint_id: int) -> Response:
        services.endpoint_disable(endpoint=self.get_endpoint(endpoint_id), actor=request.user)
        return self.render(endpoint_id)


class EndpointEnableApi(EndpointAPIView):
    @extend_schema(
        operation_id="endpoints_enable",
        request=None,
        responses={200: EndpointOutput, **ERRORS_WRITE},
        description="Resumes deliveries, signed with the same secret as before.",
    )
    def post(self, request: Request, slug: str, endpoint_id: int) -> Response:
        services.endpoint_enable(endpoint=self.get_endpoint(endpoint_id), actor=request.user)
        return self.render(endpoint_id)


class TestEventThrottle(UserRateThrottle):
    """Send Test Event must not become a way to flood a third party."""

    scope = "endpoint_test"

    def get_rate(self) -> str:
        return settings.WEBHOOKS_TEST_EVENT_RATE


class EndpointTestApi(EndpointAPIView):
    throttle_classes = [TestEventThrottle]

    @extend_schema(
        operation_id="endpoints_test",
        request=None,
        responses={202: DeliveryOutput, 429: error_response("Too many test events; try again later."), **ERRORS_WRITE},
        description="Sends a synthetic `webhook.test` event to this endpoint alone, enabled or not.",
    )
    def post(self, request: Request, slug: str, endpoint_id: int) -> Response:
        delivery = send_test_event(endpoint=self.get_endpoint(endpoint_id))
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class EndpointRotateSecretApi(EndpointAPIView):
    @extend_schema(
        operation_id="endpoints_rotate_secret",
        request=RotateSecretInput,
        responses={200: EndpointWithSecretOutput, 400: VALIDATION_ERROR, **ERRORS_WRITE},
        description="Replaces the signing secret; the new one is in this response only. For `overlap_hours` "
        "(24 unless given) deliveries are signed with the replaced secret too, until `previous_secret_expires_at`.",
    )
    def post(self, request: Request, slug: str, endpoint_id: int) -> Response:
        endpoint = self.get_endpoint(endpoint_id)
        data = RotateSecretInput(data=request.data)
        data.is_valid(raise_exception=True)
        overlap = timedelta(hours=data.validated_data["overlap_hours"])
        secret = services.endpoint_rotate_secret(endpoint=endpoint, overlap=overlap, actor=request.user)
        return self.render(endpoint_id, secret=secret)


class EndpointEndOverlapApi(EndpointAPIView):
    @extend_schema(
        operation_id="endpoints_end_overlap",
        request=None,
        responses={200: EndpointOutput, **ERRORS_WRITE},
        description="Stops signing with the secret a rotation replaced, before its overlap runs out. "
        "Harmless when there is no overlap.",
    )
    def post(self, request: Request, slug: str, endpoint_id: int) -> Response:
        services.endpoint_end_overlap(endpoint=self.get_endpoint(endpoint_id), actor=request.user)
        return self.render(endpoint_id)


class AuditPagination(TimeCursorPagination):
    ordering = ("-created_at", "-id")


class EndpointAuditApi(EndpointAPIView, generics.ListAPIView):
    serializer_class = AuditEntryOutput
    pagination_class = AuditPagination
    queryset = EndpointAuditEntry.objects.none()  # for the schema generator

    def get_queryset(self):
        # By id, not through the endpoint: the trail outlives a deleted endpoint.
        endpoint_id = self.kwargs["endpoint_id"]
        entries = EndpointAuditEntry.objects.filter(
            workspace=self.workspace, endpoint_id=endpoint_id if endpoint_id <= MAX_ID else 0
        ).select_related("actor")
        if not entries.exists():
            raise NotFound()
        return entries

    @extend_schema(
        operation_id="endpoints_audit",
        responses={200: AuditEntryOutput(many=True), **ERRORS_READ},
        description="Every change to the endpoint, newest first: action, who, when and what changed. "
        "Still readable after the endpoint is deleted.",
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)
