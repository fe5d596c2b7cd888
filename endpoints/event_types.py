"""The catalogue of event types: the one place that says what can be delivered."""

from dataclasses import dataclass


@dataclass(frozen=True)
class EventType:
    name: str
    description: str

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]


SUBSCRIBABLE: tuple[EventType, ...] = (
    EventType("project.created", "A project was created."),
    EventType("project.updated", "A project's details changed."),
    EventType("project.deleted", "A project was deleted."),
    EventType("task.created", "A task was created."),
    EventType("task.updated", "A task's details changed."),
    EventType("task.completed", "A task was marked complete."),
    EventType("client.created", "A client was added."),
    EventType("client.updated", "A client's details changed."),
    EventType("invoice.paid", "An invoice was paid in full."),
    EventType("invoice.overdue", "An invoice passed its due date unpaid."),
    EventType("invoice.refunded", "A paid invoice was refunded."),
    EventType("team.member_added", "A person joined the workspace."),
    EventType("team.member_removed", "A person left the workspace."),
)

# Sent only by "Send Test Event"; no endpoint can subscribe to it.
TEST_EVENT = EventType("webhook.test", "A synthetic event sent by Send Test Event.")

SUBSCRIBABLE_NAMES: frozenset[str] = frozenset(t.name for t in SUBSCRIBABLE)
BY_NAME: dict[str, EventType] = {t.name: t for t in (*SUBSCRIBABLE, TEST_EVENT)}
