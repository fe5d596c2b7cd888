"""Support's view of deliveries: the dead-letter queue with replay. History is read-only."""

import re
import uuid
from functools import cached_property

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from clientflow_webhooks.models import Workspace
from clientflow_webhooks.parsing import MAX_ID, is_uuid
from endpoints import event_types as catalogue
from endpoints.admin import EndpointAdmin as BaseEndpointAdmin
from endpoints.models import Endpoint
from endpoints.templatetags.webhooks import success_rate

from . import selectors, services
from .models import DeadLetter, Delivery, DeliveryAttempt, DeliveryReplay, Event


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is never edited."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


SLUG = re.compile(r"[-a-zA-Z0-9_]+")


class RefuseForgedActionsMixin:
    """Django silently ignores a POSTed action the user may not run; say so instead."""

    def changelist_view(self, request: HttpRequest, extra_context=None):
        action = None
        if request.method == "POST" and "action" in request.POST:
            # The action Django would run: the one of the form whose button was pressed.
            names = request.POST.getlist("action")
            index = request.POST.get("index", "0")
            action = names[int(index)] if index.isdigit() and int(index) < len(names) else names[0]
        if action and action not in self.get_actions(request):  # type: ignore[attr-defined]
            messages.error(request, "You do not have permission to run that action; nothing was done.")
            return HttpResponseRedirect(request.get_full_path())
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows: an exact count of hundreds of thousands of rows is a scan
    that support does not need; past the cap, filters narrow the list."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP].count()


def replay_message(request: HttpRequest, result: services.ReplayResult) -> None:
    """Say how many were replayed and how many were refused, and why."""
    replayed = len(result.replayed)
    parts = [f"Replayed {replayed} dead letter{'s' if replayed != 1 else ''}."]
    refused = sum(len(v) for v in result.refused.values())
    if refused:
        reasons = "; ".join(f"{len(v)} because {reason}" for reason, v in result.refused.items())
        parts.append(f"Refused {refused}: {reasons}.")
    level = messages.SUCCESS if replayed and not refused else messages.WARNING if replayed else messages.ERROR
    messages.add_message(request, level, " ".join(parts))


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "duration_ms", "response_status", "outcome", "error", "response_body"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReplayInline(admin.TabularInline):
    model = DeliveryReplay
    extra = 0
    can_delete = False
    fields = ["created_at", "actor", "batch"]
    readonly_fields = fields
    verbose_name_plural = "replays"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class WorkspaceFilter(admin.SimpleListFilter):
    title = "workspace"
    parameter_name = "workspace"

    def lookups(self, request, model_admin):
        return list(Workspace.objects.order_by("slug").values_list("slug", "slug")[:200])

    def queryset(self, request, queryset):
        value = self.value() or ""
        return queryset.filter(event__workspace__slug=value) if SLUG.fullmatch(value) else queryset


class EndpointFilter(admin.SimpleListFilter):
    """Lists the endpoints of the chosen workspace (all endpoints would be too many)."""

    title = "endpoint"
    parameter_name = "endpoint"

    def lookups(self, request, model_admin):
        slug = request.GET.get(WorkspaceFilter.parameter_name)
        if not slug:
            return []
        return [(str(e.id), e.url) for e in Endpoint.objects.filter(workspace__slug=slug).order_by("url")[:200]]

    def has_output(self) -> bool:
        return True

    def queryset(self, request, queryset):
        value = self.value() or ""
        if value.isascii() and value.isdigit() and int(value) <= MAX_ID:
            return queryset.filter(endpoint_id=int(value))
        return queryset


class EventTypeFilter(admin.SimpleListFilter):
    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return [(name, name) for name in catalogue.BY_NAME]

    def queryset(self, request, queryset):
        return queryset.filter(event__type=self.value()) if self.value() in catalogue.BY_NAME else queryset


class DeliverySearchMixin:
    """Search by delivery id, event id or endpoint URL: each term by the field it can be."""

    search_help_text = "A delivery id, an event id (evt_…) or part of an endpoint URL."

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(id=uuid.UUID(term)), False
        except ValueError:
            pass
        if term.startswith("evt_"):
            return queryset.filter(event_id=term), False
        return queryset.filter(endpoint__url__icontains=term), False


@admin.register(DeadLetter)
class DeadLetterAdmin(RefuseForgedActionsMixin, DeliverySearchMixin, ReadOnlyAdmin):
    list_display = [
        "completed_at",
        "workspace",
        "endpoint_link",
        "event_type",
        "event_id",
        "status",
        "reason",
        "attempt_count",
    ]
    list_filter = [
        "status",
        WorkspaceFilter,
        EndpointFilter,
        EventTypeFilter,
        ("completed_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["event__workspace", "endpoint"]
    ordering = ["-completed_at"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100
    actions = ["replay"]
    # The page shows what the list shows, with the id and both times.
    fields = ["id", *list_display[1:], "created_at", "completed_at"]
    readonly_fields = fields
    inlines = [AttemptInline, ReplayInline]
    change_form_template = "admin/deliveries/deadletter/change_form.html"

    @admin.display(description="workspace", ordering="event__workspace__slug")
    def workspace(self, obj: Delivery) -> str:
        return obj.event.workspace.slug

    @admin.display(description="endpoint")
    def endpoint_link(self, obj: Delivery) -> str:
        if obj.endpoint is None:
            return "(deleted)"
        return format_html(
            '<a href="{}?{}={}&amp;{}={}">{}</a>',
            reverse("admin:deliveries_deadletter_changelist"),
            WorkspaceFilter.parameter_name,
            obj.event.workspace.slug,
            EndpointFilter.parameter_name,
            obj.endpoint_id,
            obj.endpoint.url,
        )

    @admin.display(description="event type", ordering="event__type")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.type

    @admin.display(description="why it ended")
    def reason(self, obj: Delivery) -> str:
        if obj.last_status_code and not obj.last_error.startswith("HTTP "):
            return f"HTTP {obj.last_status_code}: {obj.last_error}"
        return obj.last_error or (f"HTTP {obj.last_status_code}" if obj.last_status_code else "")

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deliveries.replay_delivery")

    @admin.action(permissions=["replay"], description="Replay the selected dead letters")
    def replay(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        if request.POST.get("select_across") != "1":
            # The rows ticked, even those no longer dead letters, so each refusal says why.
            ticked = [v for v in request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME) if is_uuid(v)]
            queryset = Delivery.objects.filter(pk__in=ticked)
        replay_message(request, services.delivery_replay(deliveries=queryset, actor=request.user))

    def get_urls(self):
        view = self.admin_site.admin_view(self.replay_one_view)
        return [path("<uuid:object_id>/replay/", view, name="deliveries_deadletter_replay"), *super().get_urls()]

    def replay_one_view(self, request: HttpRequest, object_id: uuid.UUID) -> HttpResponse:
        """The Replay button of one dead letter's page (a POST)."""
        delivery = get_object_or_404(Delivery.objects.select_related("endpoint"), id=object_id)
        here = reverse("admin:deliveries_delivery_change", args=[delivery.id])
        if not self.has_replay_permission(request):
            messages.error(request, "You may not replay deliveries.")
            return HttpResponseRedirect(here)
        if request.method != "POST":
            messages.error(request, "Replay with the Replay button on the dead letter's page (a POST).")
            return HttpResponseRedirect(here)
        replay_message(request, services.delivery_replay(deliveries=[delivery], actor=request.user))
        return HttpResponseRedirect(here)

    def render_change_form(self, request, context, *args, **kwargs):
        context["can_replay"] = self.has_replay_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)


@admin.register(Delivery)
class DeliveryAdmin(DeliverySearchMixin, ReadOnlyAdmin):
    list_display = ["created_at", "id", "event", "endpoint", "status", "attempt_count", "last_status_code"]
    list_filter = ["status", WorkspaceFilter, EndpointFilter, EventTypeFilter]
    list_select_related = ["event", "endpoint"]
    ordering = ["-created_at"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    inlines = [AttemptInline, ReplayInline]
    exclude = ["locked_until"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "workspace", "created_at"]
    list_filter = [EventTypeFilter]
    search_fields = ["=id"]
    list_select_related = ["workspace"]
    ordering = ["-created_at"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    def get_list_filter(self, request):
        return [EventTypeFilter]


# The endpoint admin lives in `endpoints`; replaying is the deliveries' business, so it is
# extended here (deliveries may import endpoints, not the other way round).
admin.site.unregister(Endpoint)


@admin.register(Endpoint)
class EndpointAdmin(RefuseForgedActionsMixin, BaseEndpointAdmin):
    actions = [*BaseEndpointAdmin.actions, "replay_dead_letters"]
    change_form_template = "admin/endpoints/endpoint/change_form.html"
    list_display = [*BaseEndpointAdmin.list_display, "disabled_automatically_at"]
    # The page of one endpoint shows its figures too (`selectors.endpoints_with_health`).
    fields = [
        *BaseEndpointAdmin.fields,
        "disabled_reason",
        "disabled_automatically_at",
        "deliveries_24h",
        "deliveries_7d",
        "last_error",
    ]
    readonly_fields = fields

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Endpoint | None:
        endpoint = super().get_object(request, object_id, from_field)
        if endpoint is None:
            return None
        return selectors.endpoints_with_health(endpoints=Endpoint.objects.filter(pk=endpoint.pk)).first()

    @admin.display(description="deliveries (24 h)")
    def deliveries_24h(self, obj: Endpoint) -> str:
        return f"{obj.deliveries_24h}, success rate {success_rate(obj)}"

    @admin.display(description="deliveries (7 days)")
    def deliveries_7d(self, obj: Endpoint) -> str:
        return f"{obj.deliveries_7d}, success rate {success_rate(obj, '7d')}"

    @admin.display(description="last error (7 days)")
    def last_error(self, obj: Endpoint) -> str:
        return f"{obj.last_error} ({obj.last_error_at:%Y-%m-%d %H:%M} UTC)" if obj.last_error else "—"

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deliveries.replay_delivery")

    @admin.action(permissions=["replay"], description="Replay all dead letters of the selected endpoints")
    def replay_dead_letters(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> HttpResponse | None:
        return self._replay_dead_letters(request, queryset)

    def _replay_dead_letters(self, request: HttpRequest, endpoints: QuerySet[Endpoint]) -> HttpResponse | None:
        """First a confirmation with the counts; the confirmed POST replays."""
        if request.POST.get("confirm") == "yes":
            dead = selectors.dead_letters().filter(endpoint__in=endpoints)
            replay_message(request, services.delivery_replay(deliveries=dead, actor=request.user))
            return None
        counts = selectors.dead_letter_counts(endpoints=endpoints)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Replay dead letters?",
            "counts": counts,
            "total": sum(n for _, n in counts),
            "selected": [str(e.pk) for e in endpoints],
            "action": request.POST.get("action", ""),
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/endpoints/endpoint/replay_confirm.html", context)

    def get_urls(self):
        view = self.admin_site.admin_view(self.replay_endpoint_view)
        return [
            path("<int:object_id>/replay-dead-letters/", view, name="endpoints_endpoint_replay"),
            *super().get_urls(),
        ]

    def replay_endpoint_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The button on one endpoint's page: the same confirmation, then the replay."""
        here = reverse("admin:endpoints_endpoint_change", args=[object_id])
        if not self.has_replay_permission(request):
            messages.error(request, "You may not replay deliveries.")
            return HttpResponseRedirect(here)
        endpoints = Endpoint.objects.filter(pk=object_id)
        if not endpoints.exists():
            messages.error(request, "No such endpoint.")
            return HttpResponseRedirect(reverse("admin:endpoints_endpoint_changelist"))
        return self._replay_dead_letters(request, endpoints) or HttpResponseRedirect(here)

    def render_change_form(self, request, context, *args, **kwargs):
        context["can_replay"] = self.has_replay_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)
