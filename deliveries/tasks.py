"""Celery tasks: thin wrappers that load ids and call services."""

import logging

from celery import shared_task

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="deliveries.tasks.deliver")
def deliver(delivery_ids: list[str]) -> None:
    """Make the next attempt of each delivery (a message carries one or several)."""
    for delivery_id in delivery_ids:
        try:
            services.delivery_attempt(delivery_id=delivery_id)
        except Exception:
            # The lease runs out and the sweeper tries again; the others go on.
            logger.exception("delivery %s attempt crashed", delivery_id)


@shared_task(name="deliveries.tasks.sweep_due_deliveries")
def sweep_due_deliveries() -> int:
    return services.deliveries_sweep()
