"""Settings → Webhooks API for deliveries: what was sent where, and what came back."""

import uuid

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from clientflow_webhooks.api import ERRORS_READ, VALIDATION_ERROR, TimeCursorPagination, WorkspaceAPIView

from . import selectors
from .filters import DeliveryFilter
from .models import Delivery
from .serializers import DeliveryDetailOutput, DeliveryOutput


class DeliveryPagination(TimeCursorPagination):
    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 200


class DeliveryListApi(WorkspaceAPIView, generics.ListAPIView):
    serializer_class = DeliveryOutput
    pagination_class = DeliveryPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = DeliveryFilter

    queryset = Delivery.objects.none()  # for the schema generator; requests use get_queryset

    def get_queryset(self):
        # The list shows neither the payload nor the data: leave them in the database.
        return selectors.deliveries_of_workspace(workspace=self.workspace).defer("event__payload", "event__data")

    @extend_schema(
        operation_id="deliveries_list",
        responses={200: DeliveryOutput(many=True), 400: VALIDATION_ERROR, **ERRORS_READ},
        description="The workspace's deliveries, newest first, by cursor pages. Filter by endpoint, status, "
        "event type and creation time; an unknown or malformed cursor is a 404.",
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class DeliveryDetailApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="deliveries_retrieve",
        responses={200: DeliveryDetailOutput, **ERRORS_READ},
        description="The delivery, its event's payload and every attempt with what came back.",
    )
    def get(self, request: Request, slug: str, delivery_id: uuid.UUID) -> Response:
        delivery = selectors.delivery_of_workspace(workspace=self.workspace, delivery_id=delivery_id)
        if delivery is None:
            raise NotFound()
        return Response(DeliveryDetailOutput(delivery).data)
