"""Settings → Webhooks pages. Thin: parse a form, call a service, render or redirect."""

import time
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.generic import FormView, TemplateView, View

from clientflow_webhooks.parsing import MAX_ID, is_uuid
from clientflow_webhooks.views import WorkspaceMixin
from deliveries.selectors import deliveries_of_endpoint, endpoints_with_health
from deliveries.services import send_test_event

from . import crypto, services
from .api import TestEventThrottle
from .forms import EndpointForm, RotateSecretForm
from .models import Endpoint

# Where new secrets wait, in the person's session, for the page that shows each once:
# {endpoint id: [secret, expiry as a Unix time]}. Any other page clears them.
SECRET_SESSION_KEY = "endpoints.new_secrets"  # noqa: S105 - a session key name
SECRET_WAITS_SECONDS = 300
DELIVERIES_PER_PAGE = 20


class EndpointMixin(WorkspaceMixin):
    keeps_waiting_secrets = False

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # A secret not picked up by the very next page is not kept in the session.
        if request.method == "GET" and not self.keeps_waiting_secrets:
            request.session.pop(SECRET_SESSION_KEY, None)
        return super().dispatch(request, *args, **kwargs)

    def get_endpoint(self) -> Endpoint:
        endpoint_id = self.kwargs["endpoint_id"]
        endpoint = (
            endpoints_with_health(endpoints=Endpoint.objects.filter(workspace=self.workspace))
            .filter(id=endpoint_id)
            .first()
            if endpoint_id <= MAX_ID
            else None
        )
        if endpoint is None:
            raise Http404("No such endpoint.")
        return endpoint

    def url(self, name: str, endpoint: Endpoint | None = None) -> str:
        kwargs: dict[str, Any] = {"slug": self.workspace.slug}
        if endpoint is not None:
            kwargs["endpoint_id"] = endpoint.id
        return reverse(f"endpoints:{name}", kwargs=kwargs)

    def show_secret_once(self, endpoint: Endpoint, secret: str) -> HttpResponse:
        waiting = self.request.session.get(SECRET_SESSION_KEY, {})
        # Encrypted like the column: sessions live in the database too.
        waiting[str(endpoint.id)] = [crypto.encrypt(secret), time.time() + SECRET_WAITS_SECONDS]
        self.request.session[SECRET_SESSION_KEY] = waiting
        return HttpResponseRedirect(self.url("secret", endpoint))


class ManagersOnlyMixin:
    """Pages that only lead to a change: members get 403 even for the GET."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.membership.can_manage_webhooks:  # type: ignore[attr-defined]
            raise PermissionDenied("Only the workspace's owners and admins can change webhooks.")
        return super().get(request, *args, **kwargs)  # type: ignore[misc]


class EndpointListView(EndpointMixin, TemplateView):
    template_name = "endpoints/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        endpoints = endpoints_with_health(endpoints=Endpoint.objects.filter(workspace=self.workspace))
        return super().get_context_data(endpoints=endpoints, **kwargs)


class EndpointFormView(EndpointMixin, ManagersOnlyMixin, FormView):
    template_name = "endpoints/form.html"
    form_class = EndpointForm

    def form_valid(self, form: EndpointForm) -> HttpResponse:
        try:
            return self.save(form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)  # the service's messages, each beside its field
            return self.form_invalid(form)

    def save(self, data: dict[str, Any]) -> HttpResponse:
        raise NotImplementedError


class EndpointCreateView(EndpointFormView):
    def save(self, data: dict[str, Any]) -> HttpResponse:
        endpoint, secret = services.endpoint_create(workspace=self.workspace, actor=self.request.user, **data)
        return self.show_secret_once(endpoint, secret)


class EndpointEditView(EndpointFormView):
    def get_initial(self) -> dict[str, Any]:
        endpoint = self.get_endpoint()
        return {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(endpoint=self.get_endpoint(), **kwargs)

    def save(self, data: dict[str, Any]) -> HttpResponse:
        endpoint = services.endpoint_update(endpoint=self.get_endpoint(), actor=self.request.user, **data)
        messages.success(self.request, "Endpoint saved. Its signing secret is unchanged.")
        return HttpResponseRedirect(self.url("detail", endpoint))


@method_decorator(never_cache, name="dispatch")
class EndpointSecretView(EndpointMixin, TemplateView):
    """Shows a new signing secret once: the session hands it over and forgets it."""

    template_name = "endpoints/secret.html"
    keeps_waiting_secrets = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        endpoint = self.get_endpoint()
        secret = None
        # Only a GET hands the secret over: a HEAD (a link checker) must not use it up.
        if self.request.method == "GET":
            waiting = self.request.session.get(SECRET_SESSION_KEY, {})
            entry = waiting.pop(str(endpoint.id), None)
            self.request.session[SECRET_SESSION_KEY] = waiting
            if entry and entry[1] > time.time():
                secret = crypto.decrypt(entry[0])
        overlap_ends_at = endpoint.overlap_ends_at(now=timezone.now())
        return super().get_context_data(endpoint=endpoint, secret=secret, overlap_ends_at=overlap_ends_at, **kwargs)


class EndpointDetailView(EndpointMixin, TemplateView):
    template_name = "endpoints/detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        endpoint = self.get_endpoint()
        deliveries = deliveries_of_endpoint(endpoint=endpoint)
        page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(self.request.GET.get("page"))
        test_delivery = None
        if test_id := self.request.GET.get("test"):
            test_delivery = deliveries.filter(id=test_id).first() if is_uuid(test_id) else None
        return super().get_context_data(
            endpoint=endpoint,
            page=page,
            test_delivery=test_delivery,
            overlap_ends_at=endpoint.overlap_ends_at(now=timezone.now()),
            **kwargs,
        )


class EndpointSendTestView(EndpointMixin, View):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        endpoint = self.get_endpoint()
        throttle = TestEventThrottle()
        if not throttle.allow_request(request, self):
            messages.error(request, f"Too many test events. Try again in {round(throttle.wait() or 1)} s.")
            return HttpResponseRedirect(self.url("detail", endpoint))
        delivery = send_test_event(endpoint=endpoint)
        return HttpResponseRedirect(f"{self.url('detail', endpoint)}?test={delivery.id}#test-result")


class EndpointConfirmView(EndpointMixin, ManagersOnlyMixin, TemplateView):
    """A confirmation page (GET) for a change that the POST then makes."""

    template_name = "endpoints/confirm.html"
    action = ""
    title = ""
    explanation = ""
    button = ""
    danger = False

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(endpoint=self.get_endpoint(), view=self, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.perform(self.get_endpoint())

    def perform(self, endpoint: Endpoint) -> HttpResponse:
        raise NotImplementedError


class EndpointDisableView(EndpointConfirmView):
    action, title, button = "disable", "Disable this endpoint?", "Disable endpoint"
    explanation = (
        "Deliveries pause: events published while it is disabled are not sent to it. "
        "The configuration and the signing secret stay the same, so you can enable it again at any time."
    )

    def perform(self, endpoint: Endpoint) -> HttpResponse:
        services.endpoint_disable(endpoint=endpoint, actor=self.request.user)
        messages.success(self.request, "Endpoint disabled. Its signing secret stays the same.")
        return HttpResponseRedirect(self.url("detail", endpoint))


class EndpointEnableView(EndpointConfirmView):
    action, title, button = "enable", "Enable this endpoint?", "Enable endpoint"
    explanation = "New events are delivered again, signed with the same secret as before."

    def perform(self, endpoint: Endpoint) -> HttpResponse:
        services.endpoint_enable(endpoint=endpoint, actor=self.request.user)
        messages.success(self.request, "Endpoint enabled. Deliveries are signed with the same secret as before.")
        return HttpResponseRedirect(self.url("detail", endpoint))


class EndpointRotateSecretView(EndpointMixin, ManagersOnlyMixin, FormView):
    """Rotation, with a choice of how long the secret it replaces keeps signing too."""

    template_name = "endpoints/rotate.html"
    form_class = RotateSecretForm

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        endpoint = self.get_endpoint()
        overlap_ends_at = endpoint.overlap_ends_at(now=timezone.now())
        return super().get_context_data(endpoint=endpoint, overlap_ends_at=overlap_ends_at, **kwargs)

    def form_valid(self, form: RotateSecretForm) -> HttpResponse:
        endpoint = self.get_endpoint()
        overlap = timedelta(hours=form.cleaned_data["overlap_hours"])
        secret = services.endpoint_rotate_secret(endpoint=endpoint, overlap=overlap, actor=self.request.user)
        return self.show_secret_once(endpoint, secret)


class EndpointEndOverlapView(EndpointConfirmView):
    action, title, button, danger = "end-overlap", "End the overlap now?", "End overlap now", True
    explanation = (
        "Deliveries stop carrying a signature made with the previous secret at once: a receiver that still "
        "verifies with it will reject them. Do this once your receiver uses the new secret, or at once if the "
        "previous secret may have leaked."
    )

    def perform(self, endpoint: Endpoint) -> HttpResponse:
        if services.endpoint_end_overlap(endpoint=endpoint, actor=self.request.user):
            messages.success(self.request, "Overlap ended: deliveries are signed with the current secret only.")
        else:
            messages.info(self.request, "There was no overlap to end.")
        return HttpResponseRedirect(self.url("detail", endpoint))


class EndpointDeleteView(EndpointConfirmView):
    action, title, button, danger = "delete", "Delete this endpoint?", "Delete endpoint", True
    explanation = (
        "It stops receiving events and its configuration and secret are gone. "
        "Its past deliveries are kept, and the API still lists them."
    )

    def perform(self, endpoint: Endpoint) -> HttpResponse:
        services.endpoint_delete(endpoint=endpoint, actor=self.request.user)
        messages.success(self.request, f"Endpoint {endpoint.url} deleted.")
        return HttpResponseRedirect(self.url("list"))
