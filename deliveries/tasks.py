"""Celery tasks: thin wrappers that call services."""

from dataclasses import asdict
from datetime import datetime

from celery import shared_task

from . import notices, operations, services


@shared_task(name="deliveries.tasks.drain_endpoint")
def drain_endpoint(endpoint_id: int) -> int:
    """Make the due attempts of one endpoint (see `services.endpoint_drain`)."""
    return services.endpoint_drain(endpoint_id=endpoint_id)


@shared_task(name="deliveries.tasks.wake_endpoints")
def wake_endpoints(endpoint_ids: list[int], at: str | None = None) -> None:
    """The wake-ups of a large fan-out, sent from a worker instead of the publisher."""
    services.endpoints_wake(endpoint_ids=endpoint_ids, at=datetime.fromisoformat(at) if at else None)


@shared_task(name="deliveries.tasks.sweep_due_deliveries")
def sweep_due_deliveries() -> int:
    return services.deliveries_sweep()


@shared_task(name="deliveries.tasks.auto_disable_endpoints")
def auto_disable_endpoints() -> int:
    """Beat: disable endpoints that have been dead for days (see `operations.endpoints_auto_disable`)."""
    return len(operations.endpoints_auto_disable())


@shared_task(name="deliveries.tasks.apply_retention")
def apply_retention() -> dict[str, int]:
    """Beat: delete what is past its retention (see `operations.deliveries_purge`)."""
    return asdict(operations.deliveries_purge())


@shared_task(name="deliveries.tasks.send_endpoint_notice")
def send_endpoint_notice(endpoint_id: int, kind: str, details: dict | None = None) -> int:
    """Email a workspace's owners and admins about one of its endpoints (see `notices`)."""
    return notices.endpoint_notice_send(endpoint_id=endpoint_id, kind=kind, details=details or {})
