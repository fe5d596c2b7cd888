from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from . import event_types as catalogue
from .models import Endpoint, EndpointAuditEntry

EVENT_TYPE_NAMES = [t.name for t in catalogue.SUBSCRIBABLE]


@extend_schema_field(
    {"type": "array", "items": {"type": "string", "enum": EVENT_TYPE_NAMES}, "minItems": 1, "uniqueItems": True}
)
class EventTypesField(serializers.Field):
    """A list of event type names; the service says which are acceptable, by this field."""

    default_error_messages = {"not_a_list": "Expected a list of event type names."}

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            self.fail("not_a_list")
        for item in data:
            ProhibitSurrogateCharactersValidator()(item)
        return data

    def to_representation(self, value: list[str]) -> list[str]:
        return value


class EventTypeOutput(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    group = serializers.CharField()
    schema = serializers.DictField(help_text="The JSON Schema (draft 2020-12) of the event's `data`.")
    example = serializers.DictField(help_text="An example `data`, valid against `schema`.")


class EndpointInput(serializers.Serializer):
    url = serializers.CharField(max_length=2048, trim_whitespace=True)
    description = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")
    event_types = EventTypesField()


class EndpointUpdateInput(serializers.Serializer):
    url = serializers.CharField(max_length=2048, required=False)
    description = serializers.CharField(max_length=500, allow_blank=True, required=False)
    event_types = EventTypesField(required=False)


class RotateSecretInput(serializers.Serializer):
    overlap_hours = serializers.IntegerField(
        min_value=0,
        max_value=168,
        required=False,
        default=24,
        help_text="How long the secret being replaced keeps signing deliveries too, so receivers can switch "
        "without failures: 0 (none) to 168 (7 days). Default 24.",
        error_messages={
            "min_value": "The overlap must be between 0 (none) and 168 hours (7 days).",
            "max_value": "The overlap must be between 0 (none) and 168 hours (7 days).",
            "invalid": "The overlap is a whole number of hours, 0 to 168.",
        },
    )


class EndpointOutput(serializers.ModelSerializer):
    event_types = serializers.ListField(child=serializers.CharField(), read_only=True)
    last_delivery_status = serializers.CharField(allow_null=True, read_only=True)
    last_delivery_at = serializers.DateTimeField(allow_null=True, read_only=True)
    deliveries_24h = serializers.IntegerField(read_only=True)
    success_rate_24h = serializers.SerializerMethodField()
    deliveries_7d = serializers.IntegerField(read_only=True)
    success_rate_7d = serializers.SerializerMethodField()
    last_error = serializers.CharField(
        allow_null=True, read_only=True, help_text="Why the latest dead letter of the last 7 days ended; null if none."
    )
    last_error_at = serializers.DateTimeField(
        allow_null=True, read_only=True, help_text="When that dead letter ended; null if none."
    )
    disabled_reason = serializers.SerializerMethodField()
    disabled_automatically_at = serializers.DateTimeField(
        allow_null=True,
        read_only=True,
        help_text="When the endpoint was disabled automatically, because every delivery ended as a dead letter "
        "for days; null unless it is disabled for that reason.",
    )
    previous_secret_expires_at = serializers.SerializerMethodField()

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "enabled",
            "created_at",
            "updated_at",
            "last_delivery_status",
            "last_delivery_at",
            "deliveries_24h",
            "success_rate_24h",
            "deliveries_7d",
            "success_rate_7d",
            "last_error",
            "last_error_at",
            "disabled_reason",
            "disabled_automatically_at",
            "previous_secret_expires_at",
        ]

    @extend_schema_field(serializers.FloatField(allow_null=True, min_value=0, max_value=1))
    def get_success_rate_24h(self, endpoint: Endpoint) -> float | None:
        """Succeeded share of the deliveries of the last 24 h that ended; null when none did."""
        return _rate(endpoint.succeeded_24h, endpoint.ended_24h)

    @extend_schema_field(serializers.FloatField(allow_null=True, min_value=0, max_value=1))
    def get_success_rate_7d(self, endpoint: Endpoint) -> float | None:
        """Succeeded share of the deliveries of the last 7 days that ended; null when none did."""
        return _rate(endpoint.succeeded_7d, endpoint.ended_7d)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_disabled_reason(self, endpoint: Endpoint) -> str | None:
        """Why the endpoint was disabled, when the system disabled it; null otherwise."""
        return endpoint.disabled_reason or None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_previous_secret_expires_at(self, endpoint: Endpoint) -> str | None:
        """While a rotation's overlap lasts, when the previous secret stops signing deliveries; else null."""
        ends_at = endpoint.overlap_ends_at(now=timezone.now())
        return None if ends_at is None else serializers.DateTimeField().to_representation(ends_at)


def _rate(succeeded: int, ended: int) -> float | None:
    return round(succeeded / ended, 4) if ended else None


class EndpointWithSecretOutput(EndpointOutput):
    """Only the responses that create a secret carry it."""

    secret = serializers.CharField(read_only=True)

    class Meta(EndpointOutput.Meta):
        fields = [*EndpointOutput.Meta.fields, "secret"]


class AuditEntryOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.get_username", allow_null=True, default=None)

    class Meta:
        model = EndpointAuditEntry
        fields = ["id", "action", "actor", "changes", "created_at"]
