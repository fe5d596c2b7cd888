import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Delivery, DeliveryAttempt


class DeliveryOutput(serializers.ModelSerializer):
    event_id = serializers.CharField(source="event.id")
    event_type = serializers.CharField(source="event.type")
    endpoint = serializers.IntegerField(source="endpoint_id", allow_null=True, help_text="null once deleted")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "endpoint",
            "status",
            "attempt_count",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "created_at",
            "completed_at",
        ]


class AttemptOutput(serializers.ModelSerializer):
    request_headers = serializers.DictField(child=serializers.CharField())
    response_headers = serializers.DictField(child=serializers.CharField())

    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "request_headers",
            "response_status",
            "response_headers",
            "response_body",
            "error",
            "outcome",
        ]


class DeliveryDetailOutput(DeliveryOutput):
    payload = serializers.SerializerMethodField()
    attempts = AttemptOutput(many=True, read_only=True)

    class Meta(DeliveryOutput.Meta):
        fields = [*DeliveryOutput.Meta.fields, "payload", "attempts"]

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_payload(self, delivery: Delivery) -> dict[str, Any]:
        """The event body every attempt sends (its exact bytes are what is signed)."""
        return json.loads(delivery.event.payload)
