"""Emails to a workspace's owners and admins about one of its endpoints: when it starts
producing dead letters (at most once a day per endpoint), and when it was disabled
automatically (`operations.endpoints_auto_disable`).

Sent by a Celery task after the change that prompts them has committed, so that a slow
mail server never holds up a drain or a transaction.
"""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from clientflow_webhooks.celery import app as celery_app
from clientflow_webhooks.selectors import manager_emails
from endpoints import event_types as catalogue
from endpoints.models import Endpoint

from .models import Delivery

logger = logging.getLogger(__name__)

NOTICE_TASK = "deliveries.tasks.send_endpoint_notice"
DEAD_LETTERS = "dead_letters"
AUTO_DISABLED = "auto_disabled"
KINDS = (DEAD_LETTERS, AUTO_DISABLED)
# At most one "dead letters" email per endpoint in this long.
DEAD_LETTER_NOTICE_INTERVAL = timedelta(days=1)


def dead_letter_seen(*, endpoint: Endpoint, delivery: Delivery, error: str) -> None:
    """A delivery of `endpoint` is ending as a dead letter: email the workspace's owners
    and admins, unless they heard about this endpoint in the last day.

    One conditional UPDATE decides, so that two workers never both send. It is skipped when
    the endpoint as read says it was told within the day, so a drain makes it once per batch
    at most, and not at all while the workspace already knows. Test events do not count:
    the person testing sees the result on the page."""
    if delivery.event.type == catalogue.TEST_EVENT.name:
        return
    now = timezone.now()
    last_told_before = now - DEAD_LETTER_NOTICE_INTERVAL
    if endpoint.dead_letter_notified_at is not None and endpoint.dead_letter_notified_at > last_told_before:
        return
    not_told = Q(dead_letter_notified_at__isnull=True) | Q(dead_letter_notified_at__lte=last_told_before)
    told = Endpoint.objects.filter(not_told, id=endpoint.id).update(dead_letter_notified_at=now)
    # Told now, by us or by another worker in the meantime: the rest of the batch asks no more.
    endpoint.dead_letter_notified_at = now
    if told:
        details = {"event_type": delivery.event.type, "attempts": delivery.attempt_count, "error": error}
        transaction.on_commit(lambda: notice_enqueue(endpoint_id=endpoint.id, kind=DEAD_LETTERS, details=details))


def notice_enqueue(*, endpoint_id: int, kind: str, details: dict[str, Any]) -> None:
    """Hand the email to a worker. Never raises: a broker that is down costs this notice
    (it is logged), never the delivery or the disable that prompted it."""
    try:
        celery_app.send_task(NOTICE_TASK, args=[endpoint_id, kind], kwargs={"details": details})
    except Exception:
        logger.exception(
            "could not queue the %s email of endpoint %s", kind, endpoint_id, extra={"endpoint_id": endpoint_id}
        )


SUBJECTS = {
    DEAD_LETTERS: "Webhook deliveries to {url} are failing",
    AUTO_DISABLED: "Webhook endpoint {url} was disabled",
}


def endpoint_notice_send(*, endpoint_id: int, kind: str, details: dict[str, Any]) -> int:
    """Email the owners and admins of the endpoint's workspace about it (`kind`: one of
    KINDS). Returns how many emails went out: none for an endpoint deleted since."""
    if kind not in KINDS:
        raise ValueError(f"Unknown notice {kind!r}; expected one of {', '.join(KINDS)}.")
    endpoint = Endpoint.objects.select_related("workspace").filter(id=endpoint_id).first()
    if endpoint is None:
        return 0
    recipients = manager_emails(workspace=endpoint.workspace)
    context = {"endpoint_id": endpoint.id, "workspace_id": endpoint.workspace_id}
    if not recipients:
        logger.warning("endpoint %s: nobody to email about %s", endpoint.id, kind, extra=context)
        return 0
    path = reverse("endpoints:detail", kwargs={"slug": endpoint.workspace.slug, "endpoint_id": endpoint.id})
    values = {
        "endpoint": endpoint,
        "workspace": endpoint.workspace,
        "details": details,
        "link": f"{settings.WEBHOOKS_SITE_URL}{path}",
        "dead_letter_days": settings.WEBHOOKS_DEAD_LETTER_RETENTION_DAYS,
        "auto_disable_days": settings.WEBHOOKS_AUTO_DISABLE_DAYS,
        "auto_disable_minimum": settings.WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS,
    }
    subject = SUBJECTS[kind].format(url=endpoint.url)
    # Mail headers are one line: a URL is, but cut it in any case.
    subject = subject if len(subject) <= 200 else subject[:199] + "…"
    body = render_to_string(f"deliveries/email/{kind}.txt", values)
    sent = send_mass_mail([(subject, body, None, [to]) for to in recipients], fail_silently=False)
    logger.info("endpoint %s: %s email sent to %d people", endpoint.id, kind, sent, extra=context)
    return sent
