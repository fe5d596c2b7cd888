"""Prepared statements for the delivery pipeline's hot statements (docs/performance.md).

Django binds parameters on the client, so PostgreSQL parses and plans every statement it
is sent: for the few statements every publish and every drain runs, planning cost more
than running them. A prepared cursor sends them with server-side parameters and has them
prepared on the first execution, once per connection.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.backends.utils import CursorWrapper


class _PreparingCursor(ServerBindingCursor):
    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = True, **kwargs: Any) -> Any:
        return super().execute(query, params, prepare=prepare, **kwargs)


@contextmanager
def prepared_cursor() -> Iterator[CursorWrapper]:
    """A Django cursor (logged, wrapped, errors translated) whose statements PostgreSQL
    prepares; elsewhere, or with `WEBHOOKS_PREPARED_STATEMENTS` off, a plain one. Statements
    must be written for server-side parameters: no parameters in DDL or in identifiers."""
    if connection.vendor != "postgresql" or not settings.WEBHOOKS_PREPARED_STATEMENTS:
        with connection.cursor() as cursor:
            yield cursor
        return
    # What connection.cursor() does, with our cursor class instead of the configured one.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = _PreparingCursor(connection.connection)
    with connection._prepare_cursor(raw) as cursor:
        yield cursor
