"""Reads of endpoints shared by every interface."""

from django.db.models import QuerySet

from clientflow_webhooks.models import Workspace

from .models import Endpoint


def endpoints_subscribed(*, workspace: Workspace, event_type: str) -> QuerySet[Endpoint]:
    """Enabled endpoints of `workspace` subscribed to `event_type` (one indexed query)."""
    return Endpoint.objects.filter(workspace=workspace, enabled=True, event_type_rows__event_type=event_type)
