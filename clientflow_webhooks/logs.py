"""Log formats: one JSON object a line in production, readable lines in development.

Lines about a delivery carry its context as ``extra=`` fields (`delivery_context`), which
both formats write out. Only the fields named in CONTEXT_FIELDS are written, so that
whatever else a library attaches to a record (a request, a payload) never reaches a log.
"""

import json
import logging
from datetime import UTC, datetime
from typing import Any

# The context of a line about deliveries, in the order they are written.
CONTEXT_FIELDS = (
    "delivery_id",
    "endpoint_id",
    "workspace_id",
    "event_id",
    "event_type",
    "attempt",
    "outcome",
    "status",
    "duration_ms",
    "count",
)


def delivery_context(
    *,
    delivery_id: object,
    endpoint_id: int | None,
    workspace_id: int | None,
    attempt: int | None,
    outcome: str | None,
    **more: Any,
) -> dict[str, Any]:
    """The ``extra=`` of a line about one delivery: which one, whose, which attempt, and
    how it went (an attempt's outcome, or the status a delivery ended with unattempted)."""
    return {
        "delivery_id": str(delivery_id),
        "endpoint_id": endpoint_id,
        "workspace_id": workspace_id,
        "attempt": attempt,
        "outcome": None if outcome is None else str(outcome),
        **more,
    }


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {name: record.__dict__[name] for name in CONTEXT_FIELDS if record.__dict__.get(name) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the context
    fields that are set, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{name: _json_value(value) for name, value in _context(record).items()},
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) else str(value)


class ReadableFormatter(logging.Formatter):
    """Development: the usual line, then the context as ``key=value`` pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = _context(record)
        return f"{line} [{' '.join(f'{k}={v}' for k, v in context.items())}]" if context else line
