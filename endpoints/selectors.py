"""Reads of endpoints shared by every interface."""

from django.db import connection

from clientflow_webhooks.models import Workspace

from .models import Endpoint, EndpointEventType

_SUBSCRIBED_TEMPLATE = """
SELECT e.id FROM {endpoint} e JOIN {subscription} s ON s.endpoint_id = e.id
WHERE e.workspace_id = %s AND e.enabled = %s AND s.event_type = %s
ORDER BY e.id
"""
_SUBSCRIBED_SQL = _SUBSCRIBED_TEMPLATE.format(
    endpoint=Endpoint._meta.db_table, subscription=EndpointEventType._meta.db_table
)


def endpoint_ids_subscribed(*, workspace: Workspace, event_type: str) -> list[int]:
    """Ids of the enabled endpoints of `workspace` subscribed to `event_type`, in one
    indexed query written out: every publish runs it, and compiling the ORM query cost
    more than running it."""
    # Not prepared: a generic plan cannot tell a workspace of 3 endpoints from one of
    # 10,000, and chose to read every subscription to the event type (1 ms instead of 0.02).
    with connection.cursor() as cursor:
        cursor.execute(
            _SUBSCRIBED_SQL,
            [workspace.id, True, event_type],
        )
        return [row[0] for row in cursor.fetchall()]
