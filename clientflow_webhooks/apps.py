from django.apps import AppConfig


class ClientflowWebhooksConfig(AppConfig):
    name = "clientflow_webhooks"
    verbose_name = "Workspaces"
