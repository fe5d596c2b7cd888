"""Reads of the delivery pipeline shared by the API, the pages, the admin and the workers."""

from datetime import datetime, timedelta
from uuid import UUID

from django.db import connection
from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from clientflow_webhooks.models import Workspace
from endpoints.models import Endpoint

from .models import Delivery


def dead_letters() -> QuerySet[Delivery]:
    """Deliveries that ended failed (permanent 4xx) or exhausted, newest first."""
    return (
        Delivery.objects.filter(status__in=Delivery.DEAD_LETTER_STATUSES)
        .select_related("event", "endpoint", "event__workspace")
        .order_by("-completed_at")
    )


def _waiting(*, now: datetime) -> Q:
    """Pending, and held by no live worker (no lease, or one that ran out)."""
    return Q(status=Delivery.Status.PENDING) & (Q(locked_until__isnull=True) | Q(locked_until__lt=now))


def endpoints_overdue(*, now: datetime, grace: timedelta) -> QuerySet[Delivery]:
    """Ids of endpoints with a pending delivery due for longer than `grace` that no live
    worker holds: its wake-up was lost or its worker died."""
    return (
        Delivery.objects.filter(_waiting(now=now), next_attempt_at__lte=now - grace, endpoint__isnull=False)
        .values("endpoint_id")
        .annotate(due=Min("next_attempt_at"))
        .order_by("due")  # the longest overdue first, so none waits behind the others
        .values_list("endpoint_id", flat=True)
    )


def deliveries_waiting(*, endpoint_id: int, now: datetime) -> QuerySet[Delivery]:
    """The endpoint's pending deliveries that no worker holds, the next due first."""
    return Delivery.objects.filter(_waiting(now=now), endpoint_id=endpoint_id).order_by("next_attempt_at")


def deliveries_due(*, endpoint_id: int, now: datetime) -> QuerySet[Delivery]:
    """What a worker draining the endpoint claims next."""
    return deliveries_waiting(endpoint_id=endpoint_id, now=now).filter(next_attempt_at__lte=now)


# `deliveries_waiting`'s first due time, written out: every drain reads it, and on
# PostgreSQL compiling the ORM query cost more than running it.
_NEXT_DUE_SQL = """
SELECT next_attempt_at FROM {delivery}
WHERE endpoint_id = %(endpoint)s AND status = %(pending)s AND (locked_until IS NULL OR locked_until < %(now)s)
ORDER BY next_attempt_at LIMIT 1
"""


def endpoint_next_due(*, endpoint_id: int, now: datetime) -> datetime | None:
    """When the endpoint's next pending delivery that nobody holds is due, if it has one."""
    if connection.vendor != "postgresql":
        return deliveries_waiting(endpoint_id=endpoint_id, now=now).values_list("next_attempt_at", flat=True).first()
    with connection.cursor() as cursor:
        cursor.execute(
            _NEXT_DUE_SQL.format(delivery=Delivery._meta.db_table),
            {"endpoint": endpoint_id, "pending": Delivery.Status.PENDING, "now": now},
        )
        row = cursor.fetchone()
    return row[0] if row else None


def endpoints_with_health(*, endpoints: QuerySet[Endpoint], now: datetime | None = None) -> QuerySet[Endpoint]:
    """Annotate endpoints with their delivery figures: the last delivery's status and time,
    and over the last 24 hours the number of deliveries and how many succeeded or ended."""
    since = (now or timezone.now()) - timedelta(hours=24)
    latest = Delivery.objects.filter(endpoint=OuterRef("pk")).order_by("-created_at")
    recent = Q(deliveries__created_at__gte=since)
    return endpoints.annotate(
        last_delivery_status=Subquery(latest.values("status")[:1]),
        last_delivery_at=Subquery(latest.values("created_at")[:1]),
        deliveries_24h=Count("deliveries", filter=recent),
        succeeded_24h=Count("deliveries", filter=recent & Q(deliveries__status=Delivery.Status.SUCCEEDED)),
        ended_24h=Count("deliveries", filter=recent & Q(deliveries__status__in=Delivery.ENDED_STATUSES)),
    ).prefetch_related("event_type_rows")


def deliveries_of_workspace(*, workspace: Workspace) -> QuerySet[Delivery]:
    """A workspace's deliveries, newest first, with what a listing shows."""
    return (
        Delivery.objects.filter(event__workspace=workspace)
        .select_related("event", "endpoint")
        .order_by("-created_at", "-id")
    )


def deliveries_of_endpoint(*, endpoint: Endpoint) -> QuerySet[Delivery]:
    """An endpoint's deliveries, newest first."""
    return Delivery.objects.filter(endpoint=endpoint).select_related("event").order_by("-created_at", "-id")


def dead_letter_counts(*, endpoints: QuerySet[Endpoint]) -> list[tuple[Endpoint, int]]:
    """Each endpoint with how many dead letters it has (one grouped query)."""
    counts = dict(
        Delivery.objects.filter(endpoint__in=endpoints, status__in=Delivery.DEAD_LETTER_STATUSES)
        .values("endpoint_id")
        .annotate(n=Count("id"))
        .values_list("endpoint_id", "n")
    )
    return [(endpoint, counts.get(endpoint.id, 0)) for endpoint in endpoints]


def delivery_of_workspace(*, workspace: Workspace, delivery_id: UUID) -> Delivery | None:
    """One delivery of the workspace with its attempts, or None (also for other workspaces')."""
    return deliveries_of_workspace(workspace=workspace).prefetch_related("attempts").filter(id=delivery_id).first()
