"""Reads of the delivery pipeline shared by the API, the pages, the admin and the workers."""

from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Q, QuerySet

from .models import Delivery


def dead_letters() -> QuerySet[Delivery]:
    """Deliveries that ended failed (permanent 4xx) or exhausted, newest first."""
    return (
        Delivery.objects.filter(status__in=Delivery.DEAD_LETTER_STATUSES)
        .select_related("event", "endpoint", "event__workspace")
        .order_by("-completed_at")
    )


def deliveries_overdue(*, now: datetime, grace: timedelta, limit: int) -> list[UUID]:
    """Pending deliveries due for longer than `grace` that no live worker holds."""
    return list(
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now - grace)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
