"""Celery tasks: thin wrappers that call services."""

from datetime import datetime

from celery import shared_task

from . import services


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
