import django_filters
from django import forms

from endpoints import event_types as catalogue

from .models import Delivery


class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class DeliveryFilter(django_filters.FilterSet):
    # Bounded so that an id no bigint can hold is a 400, not a database error.
    endpoint = IdFilter(field_name="endpoint_id", min_value=1, max_value=2**63 - 1, help_text="endpoint id")
    status = django_filters.ChoiceFilter(choices=Delivery.Status.choices)
    event_type = django_filters.ChoiceFilter(
        field_name="event__type", choices=[(name, name) for name in catalogue.BY_NAME]
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="ISO 8601, inclusive"
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="ISO 8601, exclusive"
    )

    class Meta:
        model = Delivery
        fields = ["endpoint", "status", "event_type", "created_after", "created_before"]
