from django.conf import settings
from django.db import models

from clientflow_webhooks.models import Workspace

from .fields import EncryptedTextField


class Endpoint(models.Model):
    """An HTTPS URL of a workspace that receives the event types it is subscribed to."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="endpoints")
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=500, blank=True)
    # Shown once at creation or rotation; never returned by any read. Encrypted at rest.
    secret = EncryptedTextField()
    enabled = models.BooleanField(default=True)
    # Why it was disabled, when the system did it (auto-disable of a dead endpoint): shown
    # on the pages and in the API; cleared when it is enabled again.
    disabled_reason = models.TextField(blank=True)
    disabled_automatically_at = models.DateTimeField(null=True, blank=True)
    # When the workspace was last emailed that this endpoint produces dead letters (at
    # most once a day).
    dead_letter_notified_at = models.DateTimeField(null=True, blank=True)
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


class EndpointAuditEntry(models.Model):
    """Who changed an endpoint, how, and when. Never edited; kept after the endpoint is deleted."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        DISABLED = "disabled", "Disabled"
        ENABLED = "enabled", "Enabled"
        SECRET_ROTATED = "secret_rotated", "Secret rotated"
        DELETED = "deleted", "Deleted"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="endpoint_audit_entries")
    # No database constraint: the trail of a deleted endpoint keeps its id.
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.DO_NOTHING, db_constraint=False, related_name="audit_entries"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # For updates: {"field": [old, new]}. Never holds a secret.
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "endpoint audit entries"
        indexes = [models.Index(fields=["endpoint", "-created_at"], name="endpoint_audit_endpoint")]

    def __str__(self) -> str:
        return f"{self.endpoint_id} {self.action}"
