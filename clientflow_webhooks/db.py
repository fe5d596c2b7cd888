"""Prepared statements for the delivery pipeline's hot statements (docs/performance.md).

Django binds parameters on the client, so PostgreSQL parses and plans every statement it
is sent: for the few statements every publish and every drain runs, planning cost more
than running them. A prepared cursor sends them with server-side parameters and has them
prepared on the first execution, once per connection.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.backends.postgresql.base import CursorDebugWrapper, ServerBindingCursor
from django.db.backends.utils import CursorWrapper


class _PreparingCursor(ServerBindingCursor):
    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = True, **kwargs: Any) -> Any:
        return super().execute(query, params, prepare=prepare, **kwargs)


class _LoggedCursor(CursorDebugWrapper):
    """Logs a prepared statement with its values, as Django logs its own statements
    (DEBUG, tests): psycopg keeps no query text for a prepared execution."""

    @contextmanager
    def debug_sql(
        self, sql: Any = None, params: Any = None, use_last_executed_query: bool = False, many: bool = False
    ) -> Iterator[None]:
        if use_last_executed_query and not many:
            sql = self.db.ops.compose_sql(sql, params)
        with super().debug_sql(sql, params, False, many):
            yield


# A prepared statement the server no longer has, or whose result type a migration changed
# ("cached plan must not change result type"): the session's prepared statements are stale.
_STALE = (psycopg.errors.InvalidSqlStatementName, psycopg.errors.FeatureNotSupported)


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
    connection.validate_thread_sharing()
    raw_connection = connection.connection
    # Django turns psycopg's preparing off (None) for the whole connection; it is turned on
    # only around our statements, so that psycopg does not keep count of Django's own.
    threshold = raw_connection.prepare_threshold
    raw_connection.prepare_threshold = 0
    try:
        with connection.wrap_database_errors:
            raw = _PreparingCursor(raw_connection)
        wrapper = _LoggedCursor if connection.queries_logged else CursorWrapper
        with wrapper(raw, connection) as cursor:
            yield cursor
    except DatabaseError as exc:
        if isinstance(exc.__cause__, _STALE) and not connection.in_atomic_block:
            # A new session prepares afresh; this statement fails, the next one works.
            connection.close()
        raise
    finally:
        if not raw_connection.closed:
            raw_connection.prepare_threshold = threshold
