from datetime import datetime

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
    # After a rotation with an overlap, the secret it replaced keeps signing deliveries
    # too until `previous_secret_expires_at`, so receivers can switch without failures.
    previous_secret = EncryptedTextField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # Why it was disabled, when the system did it (auto-disable of a dead endpoint): shown
    # on the pages and in the API; cleared when it is enabled again.
    # A database default too: processes of the previous release insert endpoints without it.
    disabled_reason = models.TextField(blank=True, default="", db_default="")
    disabled_automatically_at = models.DateTimeField(null=True, blank=True)
    # When the workspace was last emailed that this endpoint produces dead letters (at
    # most once a day).
    dead_letter_notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(previous_secret__isnull=True, previous_secret_expires_at__isnull=True)
                | models.Q(previous_secret__isnull=False, previous_secret_expires_at__isnull=False),
                name="endpoint_previous_secret_expires",
            ),
        ]

    def __str__(self) -> str:
        return self.url

    def previous_secret_valid(self, *, at: datetime) -> bool:
        """Whether the previous secret still signs deliveries at `at` (the overlap lasts).
        A constraint keeps the secret and its expiry set together."""
        expires_at = self.previous_secret_expires_at
        return expires_at is not None and at < expires_at

    def overlap_ends_at(self, *, now: datetime) -> datetime | None:
        """When the previous secret stops signing, or None when there is no overlap now."""
        return self.previous_secret_expires_at if self.previous_secret_valid(at=now) else None

    def secrets_valid(self, *, at: datetime) -> list[str]:
        """The secrets deliveries are signed with at `at`: the current one first, then
        the previous one while the overlap lasts."""
        return [self.secret, self.previous_secret] if self.previous_secret_valid(at=at) else [self.secret]

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
        OVERLAP_ENDED = "overlap_ended", "Overlap ended"
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
