import os
import sys

from celery import Celery
from celery.signals import task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clientflow_webhooks.settings")

app = Celery("clientflow_webhooks")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _fresh_connections(**kwargs: object) -> None:
    """As Django does before each request: drop this thread's connections that failed or
    outlived CONN_MAX_AGE, and check the others' health before they are reused."""
    from django.db import close_old_connections

    close_old_connections()


@worker_init.connect
def _short_switch_interval(**kwargs: object) -> None:
    """A worker thread that waits on a socket (the receiver, PostgreSQL, Redis) must get
    the GIL back soon after its answer arrives. With CPython's default 5 ms interval, each
    of a drain's dozen round trips can wait that long behind a busy thread: tens of ms of
    latency for nothing (docs/performance.md)."""
    sys.setswitchinterval(float(os.environ.get("WORKER_SWITCH_INTERVAL", "0.0005")))
