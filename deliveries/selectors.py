"""Reads of the delivery pipeline shared by the API, the pages, the admin and the workers."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connection
from django.db.models import Count, Exists, FilteredRelation, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from clientflow_webhooks.db import prepared_cursor
from clientflow_webhooks.models import Workspace
from endpoints import event_types as catalogue
from endpoints.models import Endpoint

from .models import Delivery, Event


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
_NEXT_DUE_TEMPLATE = """
SELECT next_attempt_at FROM {delivery}
WHERE endpoint_id = %(endpoint)s AND status = '{pending}' AND (locked_until IS NULL OR locked_until < %(now)s)
ORDER BY next_attempt_at LIMIT 1
"""
_NEXT_DUE_SQL = _NEXT_DUE_TEMPLATE.format(delivery=Delivery._meta.db_table, pending=Delivery.Status.PENDING)


def endpoint_next_due(*, endpoint_id: int, now: datetime) -> datetime | None:
    """When the endpoint's next pending delivery that nobody holds is due, if it has one."""
    if connection.vendor != "postgresql":
        return deliveries_waiting(endpoint_id=endpoint_id, now=now).values_list("next_attempt_at", flat=True).first()
    with prepared_cursor() as cursor:
        cursor.execute(
            _NEXT_DUE_SQL,
            {"endpoint": endpoint_id, "now": now},
        )
        row = cursor.fetchone()
    return row[0] if row else None


def endpoints_with_health(*, endpoints: QuerySet[Endpoint], now: datetime | None = None) -> QuerySet[Endpoint]:
    """Annotate endpoints with their delivery figures: the last delivery's status and time;
    over the last 24 hours and the last 7 days, how many deliveries were made and how many
    of them ended and succeeded; and why the latest dead letter of those 7 days ended
    (`last_error`, `last_error_at`). One query for any number of endpoints, whose join
    reaches only the last 7 days of deliveries (the index delivery_endpoint_created)."""
    now = now or timezone.now()
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    latest = Delivery.objects.filter(endpoint=OuterRef("pk")).order_by("-created_at")
    latest_dead_letter = latest.filter(created_at__gte=week, status__in=Delivery.DEAD_LETTER_STATUSES)
    in_day = Q(recent__created_at__gte=day)
    succeeded = Q(recent__status=Delivery.Status.SUCCEEDED)
    ended = Q(recent__status__in=Delivery.ENDED_STATUSES)
    return (
        endpoints.annotate(recent=FilteredRelation("deliveries", condition=Q(deliveries__created_at__gte=week)))
        .annotate(
            last_delivery_status=Subquery(latest.values("status")[:1]),
            last_delivery_at=Subquery(latest.values("created_at")[:1]),
            deliveries_24h=Count("recent", filter=in_day),
            succeeded_24h=Count("recent", filter=in_day & succeeded),
            ended_24h=Count("recent", filter=in_day & ended),
            deliveries_7d=Count("recent"),
            succeeded_7d=Count("recent", filter=succeeded),
            ended_7d=Count("recent", filter=ended),
            last_error=Subquery(latest_dead_letter.values("last_error")[:1]),
            last_error_at=Subquery(latest_dead_letter.values("completed_at")[:1]),
        )
        .prefetch_related("event_type_rows")
    )


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


@dataclass(frozen=True)
class PipelineFigures:
    dead_letters: int
    pending: int
    # When the oldest due delivery that no worker holds was due (None: none is).
    oldest_due_at: datetime | None


def pipeline_figures(*, now: datetime) -> PipelineFigures:
    """What /metrics reads from the database: three scans of partial indexes (dead letters,
    pending deliveries), the last one stopping at its first row."""
    return PipelineFigures(
        dead_letters=Delivery.objects.filter(status__in=Delivery.DEAD_LETTER_STATUSES).count(),
        pending=Delivery.objects.filter(status=Delivery.Status.PENDING).count(),
        oldest_due_at=Delivery.objects.filter(_waiting(now=now), next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first(),
    )


@dataclass(frozen=True)
class FailingEndpoint:
    endpoint_id: int
    dead_letters: int
    last_error: str


def endpoints_failing(*, now: datetime, period: timedelta, minimum: int) -> list[FailingEndpoint]:
    """Enabled endpoints whose deliveries have all ended as dead letters for `period` up to
    `now` (auto-disable). Of the deliveries made to the endpoint in the period:

    - none succeeded (nor did a dead letter replayed in the period),
    - at least `minimum` ended as dead letters (pending ones have not ended yet),
    - and the last delivery made in the period before it (or as it began) that has ended,
      test events aside, is a dead letter: it was failing already when the period began. (A
      new endpoint, or one with no deliveries in the period before, has not been failing
      for the whole period.)

    Candidates come from one range of the dead-letter index; each is then judged with a few
    queries on its own deliveries of the period (the index delivery_endpoint_created).
    """
    since = now - period
    candidates = (
        Delivery.objects.filter(status__in=Delivery.DEAD_LETTER_STATUSES, completed_at__gte=since)
        .filter(endpoint__enabled=True)
        .values("endpoint_id")
        .annotate(n=Count("id"))
        .filter(n__gte=minimum)
        .order_by("endpoint_id")
        .values_list("endpoint_id", flat=True)
    )
    failing = []
    for endpoint_id in candidates:
        mine = Delivery.objects.filter(endpoint_id=endpoint_id)
        made = mine.filter(created_at__gte=since, created_at__lte=now)
        # Cheapest first: an endpoint that fails only some of the time stops at its latest success.
        succeeded = Q(status=Delivery.Status.SUCCEEDED)
        if made.filter(succeeded).exists() or mine.filter(succeeded, replays__created_at__gte=since).exists():
            continue
        dead_letters = made.filter(status__in=Delivery.DEAD_LETTER_STATUSES).count()
        # Failing already when the period began: the last delivery made in the period before
        # it (not a test event, which may predate the receiver) ended a dead letter. An
        # old dead letter followed by silence does not count.
        before = (
            mine.filter(created_at__lte=since, created_at__gt=since - (now - since), status__in=Delivery.ENDED_STATUSES)
            .exclude(event__type=catalogue.TEST_EVENT.name)
            .order_by("-created_at")
            .values_list("status", flat=True)
            .first()
        )
        if dead_letters < minimum or before not in Delivery.DEAD_LETTER_STATUSES:
            continue
        last_error = (
            made.filter(status__in=Delivery.DEAD_LETTER_STATUSES)
            .order_by("-created_at")
            .values_list("last_error", flat=True)
            .first()
        )
        failing.append(FailingEndpoint(endpoint_id=endpoint_id, dead_letters=dead_letters, last_error=last_error or ""))
    return failing


def deliveries_expired(*, before: datetime) -> QuerySet[Delivery]:
    """Succeeded and cancelled deliveries that ended before `before`, oldest first (retention;
    the partial index delivery_retention)."""
    return Delivery.objects.filter(
        status__in=(Delivery.Status.SUCCEEDED, Delivery.Status.CANCELLED), completed_at__lt=before
    ).order_by("completed_at")


def dead_letters_expired(*, before: datetime) -> QuerySet[Delivery]:
    """Dead letters that ended before `before`, oldest first (the partial index delivery_dead_letters)."""
    return Delivery.objects.filter(status__in=Delivery.DEAD_LETTER_STATUSES, completed_at__lt=before).order_by(
        "completed_at"
    )


def events_unneeded(*, workspace_id: int, before: datetime, ids: Iterable[str]) -> QuerySet[Event]:
    """Of the events `ids`, those of the workspace created before `before` that no delivery
    references any more (retention)."""
    return Event.objects.filter(id__in=list(ids), workspace_id=workspace_id, created_at__lt=before).filter(
        ~Exists(Delivery.objects.filter(event_id=OuterRef("pk")))
    )


def events_older(*, workspace_id: int, before: datetime, after: tuple[datetime, str] | None) -> QuerySet[Event]:
    """The workspace's events created before `before`, oldest first, after the (created_at, id)
    `after` when given: pages of them for retention (the index event_workspace_created)."""
    events = Event.objects.filter(workspace_id=workspace_id, created_at__lt=before)
    if after is not None:
        events = events.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1]))
    return events.order_by("created_at", "id")
