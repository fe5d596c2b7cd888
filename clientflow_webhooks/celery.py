import os

from celery import Celery
from celery.signals import task_prerun

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
