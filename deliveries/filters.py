from datetime import UTC, datetime

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from clientflow_webhooks.parsing import MAX_ID
from endpoints import event_types as catalogue

from .models import Delivery


class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 with any offset, handed to the database in UTC (PostgreSQL refuses
    offsets beyond ±15:59, which ISO 8601 allows)."""

    def to_python(self, value: str | None) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Enter a date and time between the years 1 and 9999.", code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class DeliveryFilter(django_filters.FilterSet):
    # Bounded so that an id no bigint can hold is a 400, not a database error.
    endpoint = IdFilter(field_name="endpoint_id", min_value=1, max_value=MAX_ID, help_text="endpoint id")
    status = django_filters.ChoiceFilter(choices=Delivery.Status.choices)
    event_type = django_filters.ChoiceFilter(
        field_name="event__type", choices=[(name, name) for name in catalogue.BY_NAME]
    )
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte", help_text="ISO 8601, inclusive")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt", help_text="ISO 8601, exclusive")

    class Meta:
        model = Delivery
        fields = ["endpoint", "status", "event_type", "created_after", "created_before"]
