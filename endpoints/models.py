from django.db import models

from clientflow_webhooks.models import Workspace


class Endpoint(models.Model):
    """An HTTPS URL of a workspace that receives the event types it is subscribed to."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="endpoints")
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=500, blank=True)
    # Shown once at creation; never returned by any read.
    secret = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url

    @property
    def event_types(self) -> list[str]:
        """Subscribed event type names, sorted (uses a prefetch when there is one)."""
        return sorted(row.event_type for row in self.event_type_rows.all())


class EndpointEventType(models.Model):
    """One subscription row, so that the fan-out is one indexed query."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="event_type_rows")
    event_type = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_type"], name="endpoint_event_type_unique"),
        ]
        indexes = [models.Index(fields=["event_type", "endpoint"], name="endpoint_event_type_fanout")]

    def __str__(self) -> str:
        return self.event_type
