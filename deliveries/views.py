"""The delivery page: what was sent, and every attempt with what came back."""

import json
import uuid
from typing import Any

from django.http import Http404
from django.views.generic import TemplateView

from clientflow_webhooks.views import WorkspaceMixin

from . import selectors


class DeliveryDetailView(WorkspaceMixin, TemplateView):
    template_name = "deliveries/detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        delivery_id: uuid.UUID = self.kwargs["delivery_id"]
        delivery = selectors.delivery_of_workspace(workspace=self.workspace, delivery_id=delivery_id)
        if delivery is None:
            raise Http404("No such delivery.")
        payload = json.dumps(json.loads(delivery.event.payload), indent=2, ensure_ascii=False)
        return super().get_context_data(delivery=delivery, payload=payload, **kwargs)
