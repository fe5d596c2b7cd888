import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from clientflow_webhooks.models import Workspace
from endpoints.models import Endpoint


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(16)}"


class Event(models.Model):
    """Something that happened in a workspace, with the exact body every attempt sends."""

    id = models.CharField(primary_key=True, max_length=40, default=new_event_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=64)
    data = models.JSONField()
    # The signed bytes, kept as sent: PostgreSQL's jsonb does not keep key order, so
    # the body cannot be rebuilt byte for byte from `data`.
    payload = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at"], name="event_workspace_created")]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"


class Delivery(models.Model):
    """One event to one endpoint, through as many attempts as it takes."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # a permanent 4xx
        EXHAUSTED = "exhausted", "Exhausted"  # retries used up
        CANCELLED = "cancelled", "Cancelled"

    DEAD_LETTER_STATUSES = (Status.FAILED, Status.EXHAUSTED)
    # Ended with an answer about the receiver (cancelled says nothing about it).
    ENDED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.EXHAUSTED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # Kept when the endpoint is deleted: the history stays readable.
    endpoint = models.ForeignKey(Endpoint, on_delete=models.SET_NULL, null=True, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    # Attempts made before the current retry schedule began: a replay starts a fresh
    # 1 s / 2 s / 4 s schedule while the attempt numbers go on.
    attempts_before_replay = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Held while an attempt is in flight; a lease that ran out means the worker was lost.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        permissions = [("replay_delivery", "Can replay a dead letter")]
        indexes = [
            # The sweeper: pending deliveries by due time.
            models.Index(fields=["next_attempt_at"], name="delivery_pending_due", condition=Q(status="pending")),
            # A worker draining an endpoint: its pending deliveries by due time.
            models.Index(
                fields=["endpoint", "next_attempt_at"], name="delivery_endpoint_due", condition=Q(status="pending")
            ),
            # The dead-letter list, newest first.
            models.Index(
                fields=["-completed_at"],
                name="delivery_dead_letters",
                condition=Q(status__in=["failed", "exhausted"]),
            ),
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_created"),
            # Retention: succeeded and cancelled deliveries by when they ended, oldest first.
            models.Index(
                fields=["completed_at"],
                name="delivery_retention",
                condition=Q(status__in=["succeeded", "cancelled"]),
            ),
        ]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def is_dead_letter(self) -> bool:
        return self.status in self.DEAD_LETTER_STATUSES


class DeadLetterManager(models.Manager["DeadLetter"]):
    def get_queryset(self) -> models.QuerySet["DeadLetter"]:
        return super().get_queryset().filter(status__in=Delivery.DEAD_LETTER_STATUSES)


class DeadLetter(Delivery):
    """A delivery that ended failed or exhausted: what support sees and replays."""

    objects = DeadLetterManager()

    class Meta:
        proxy = True
        verbose_name = "dead letter"


class DeliveryReplay(models.Model):
    """One delivery put back on its way from the dead letters: who did it and when."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="replays")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    # The deliveries replayed together share a batch.
    batch = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.delivery_id} replayed by {self.actor}"


class DeliveryAttempt(models.Model):
    """One HTTP request of a delivery and what came back. History: never edited."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        TRANSIENT = "transient", "Transient failure"
        PERMANENT = "permanent", "Permanent failure"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    request_headers = models.JSONField(default=dict)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number} {self.outcome}"
