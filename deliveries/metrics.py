"""Prometheus metrics of the delivery pipeline (docs/operations.md lists them).

Counters and the histogram count what happens where it happens: attempts and endings in
the worker processes, auto-disables and retention in the beat tasks (also workers). With
PROMETHEUS_MULTIPROC_DIR set, every process writes its values to its own files in that
directory and `/metrics`, served by any web process, adds them up (prometheus-client's
multiprocess mode); without it, `/metrics` shows the values of the process serving it.
The figures that live in the database (dead letters, pending deliveries, lag) are read
when `/metrics` is scraped, by `DatabaseCollector`, so every process reports the same.

Labels are bounded (outcome, reason class, status, table): never an endpoint or a
workspace, whose numbers would grow without end.
"""

import logging
import os
from collections.abc import Iterator

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from . import selectors
from .models import Delivery, DeliveryAttempt

logger = logging.getLogger(__name__)

Outcome = DeliveryAttempt.Outcome

# This process's values; in multiprocess mode they are also written to files.
_REGISTRY = CollectorRegistry()

ATTEMPTS = Counter(
    "webhooks_attempts",
    "HTTP attempts made, by outcome (success, transient, permanent) and reason class.",
    ["outcome", "reason"],
    registry=_REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "webhooks_attempt_duration_seconds",
    "How long attempts took, from the DNS lookup to the end of the response, by outcome.",
    ["outcome"],
    # Receivers answer in tens to hundreds of ms; the top buckets hold timeouts (10 s by default).
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=_REGISTRY,
)
DELIVERIES_ENDED = Counter(
    "webhooks_deliveries_ended",
    "Deliveries that ended, by status (succeeded, failed, exhausted, cancelled).",
    ["status"],
    registry=_REGISTRY,
)
ENDPOINTS_AUTO_DISABLED = Counter(
    "webhooks_endpoints_auto_disabled",
    "Endpoints disabled automatically because every delivery ended as a dead letter for too long.",
    registry=_REGISTRY,
)
RETENTION_DELETED = Counter(
    "webhooks_retention_deleted",
    "Rows deleted by retention, by table (deliveries, events).",
    ["table"],
    registry=_REGISTRY,
)

# The reason classes each outcome can have (`policy.reason_class`): the series exist from the
# start at 0, so that a rate or an alert does not wait for the first such attempt. Their
# children are kept: looking one up by its labels costs more than counting.
REASONS = {
    Outcome.SUCCESS: ("http_2xx",),
    Outcome.TRANSIENT: ("http_1xx", "http_3xx", "http_4xx", "http_5xx", "timeout", "connection", "tls", "error"),
    Outcome.PERMANENT: ("http_4xx", "blocked"),
}
_attempts = {(o.value, r): ATTEMPTS.labels(outcome=o.value, reason=r) for o in REASONS for r in REASONS[o]}
_seconds = {o.value: ATTEMPT_SECONDS.labels(outcome=o.value) for o in REASONS}
ENDINGS = (*Delivery.ENDED_STATUSES, Delivery.Status.CANCELLED)
_ended = {s.value: DELIVERIES_ENDED.labels(status=s.value) for s in ENDINGS}
for _table in ("deliveries", "events"):
    RETENTION_DELETED.labels(table=_table)


def attempt_observed(*, outcome: str, reason: str, seconds: float) -> None:
    """Count one attempt whose outcome is known."""
    outcome = str(outcome)
    (_attempts.get((outcome, reason)) or ATTEMPTS.labels(outcome=outcome, reason=reason)).inc()
    (_seconds.get(outcome) or ATTEMPT_SECONDS.labels(outcome=outcome)).observe(seconds)


def deliveries_ended(*, status: str, count: int = 1) -> None:
    """Count deliveries that ended with `status`."""
    if count:
        status = str(status)
        (_ended.get(status) or DELIVERIES_ENDED.labels(status=status)).inc(count)


# A scrape must answer even when the database is slow: its figures are skipped instead.
DATABASE_TIMEOUT_MS = 2000


class DatabaseCollector:
    """Gauges read from the database at each scrape, with cheap queries on partial indexes
    (`selectors.pipeline_figures`)."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute(f"SET LOCAL statement_timeout = {DATABASE_TIMEOUT_MS}")
                figures = selectors.pipeline_figures(now=now)
        except DatabaseError:
            logger.warning("metrics: the database figures could not be read", exc_info=True)
            yield GaugeMetricFamily("webhooks_database_figures_up", "Whether the database figures were read.", 0)
            return
        yield GaugeMetricFamily("webhooks_database_figures_up", "Whether the database figures were read.", 1)
        yield GaugeMetricFamily(
            "webhooks_dead_letters", "Deliveries that ended failed or exhausted and are kept.", figures.dead_letters
        )
        yield GaugeMetricFamily(
            "webhooks_deliveries_pending", "Deliveries waiting for an attempt, due or scheduled.", figures.pending
        )
        lag = 0.0 if figures.oldest_due_at is None else max(0.0, (now - figures.oldest_due_at).total_seconds())
        yield GaugeMetricFamily(
            "webhooks_lag_seconds",
            "Age of the oldest due delivery that no worker is sending: 0 when the workers keep up.",
            lag,
        )


def multiprocess_directory() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """Every metric in Prometheus's text format: the counters of every process (or of this
    one) and the database figures."""
    registry = CollectorRegistry()
    if multiprocess_directory():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_REGISTRY)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
