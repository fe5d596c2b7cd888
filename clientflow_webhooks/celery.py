import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clientflow_webhooks.settings")

app = Celery("clientflow_webhooks")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
