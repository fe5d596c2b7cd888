"""What /readyz checks: the database and the broker answer, each within a short timeout.

Each check opens a connection of its own rather than reusing the process's: the question
is whether a new request or task could reach the server now.
"""

import copy
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connections
from django.db.utils import load_backend
from kombu import Connection

logger = logging.getLogger(__name__)

# Seconds each check may take (psycopg's connect timeout counts whole seconds, at least 2).
TIMEOUT = 2


def database_check() -> None:
    """Connect to the database and run a query; raises when it cannot."""
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    if settings_dict["ENGINE"] == "django.db.backends.postgresql":
        options = settings_dict.setdefault("OPTIONS", {})
        options["connect_timeout"] = TIMEOUT
        options["options"] = f"{options.get('options', '')} -c statement_timeout={TIMEOUT * 1000}".strip()
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias="readiness")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        wrapper.close()


def broker_check() -> None:
    """Connect to the broker (CELERY_BROKER_URL); raises when it cannot."""
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=TIMEOUT, transport_options=options) as broker:
        broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=TIMEOUT)


CHECKS: dict[str, Callable[[], None]] = {"database": database_check, "broker": broker_check}


def readiness() -> dict[str, str]:
    """Each check's result: "ok" or "unreachable" (the details go to the log, not to
    whoever asks)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception:
            logger.warning("readiness: the %s is unreachable", name, exc_info=True)
            results[name] = "unreachable"
        else:
            results[name] = "ok"
    return results
