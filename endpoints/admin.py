from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import formats, timezone

from . import services
from .models import Endpoint, EndpointAuditEntry


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    # The signing secret is never shown, in any form.
    list_display = ["url", "workspace", "enabled", "previous_secret_expires", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "workspace__slug"]
    list_select_related = ["workspace"]
    fields = [
        "workspace",
        "url",
        "description",
        "enabled",
        "subscribed_event_types",
        "previous_secret_expires",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    actions = ["end_overlap"]

    @admin.display(description="event types")
    def subscribed_event_types(self, obj):
        return ", ".join(obj.event_types)

    @admin.display(description="previous secret expires at (overlap)")
    def previous_secret_expires(self, obj: Endpoint) -> str | None:
        """Only while the overlap lasts: an expired previous secret signs nothing."""
        ends_at = obj.overlap_ends_at(now=timezone.now())
        # Formatted here: the change form shows a method's value as plain text.
        return formats.localize(timezone.localtime(ends_at)) if ends_at else None

    def has_end_overlap_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("endpoints.change_endpoint")

    @admin.action(permissions=["end_overlap"], description="End the overlap of the selected endpoints now")
    def end_overlap(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        ended = sum(services.endpoint_end_overlap(endpoint=endpoint, actor=request.user) for endpoint in queryset)
        none = len(queryset) - ended
        text = f"Ended the overlap of {ended} endpoint{'s' if ended != 1 else ''}."
        if none:
            text += f" {none} had none."
        self.message_user(request, text, messages.SUCCESS if ended else messages.WARNING)

    def get_urls(self):
        view = self.admin_site.admin_view(self.end_overlap_view)
        return [path("<int:object_id>/end-overlap/", view, name="endpoints_endpoint_end_overlap"), *super().get_urls()]

    def end_overlap_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The button on one endpoint's page (a POST)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        here = reverse("admin:endpoints_endpoint_change", args=[object_id])
        endpoint = Endpoint.objects.filter(pk=object_id).first()
        if not self.has_end_overlap_permission(request):
            messages.error(request, "You may not change endpoints; the overlap goes on.")
        elif endpoint is None:
            messages.error(request, "No such endpoint.")
            return HttpResponseRedirect(reverse("admin:endpoints_endpoint_changelist"))
        else:
            self.end_overlap(request, Endpoint.objects.filter(pk=endpoint.pk))
        return HttpResponseRedirect(here)

    def render_change_form(self, request, context, *args, **kwargs):
        obj = context.get("original")
        context["overlap_ends_at"] = obj.overlap_ends_at(now=timezone.now()) if obj else None
        context["can_end_overlap"] = self.has_end_overlap_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

    def has_add_permission(self, request):
        return False  # endpoints get their secret through endpoint_create only

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # endpoints are deleted through endpoint_delete, which keeps the audit trail

    def lookup_allowed(self, lookup, value, request=None):
        # Never filter on the secret from a URL: each answer would reveal a little of it.
        if lookup.split("__", 1)[0] in {"secret", "previous_secret"}:
            return False
        return super().lookup_allowed(lookup, value, request)


@admin.register(EndpointAuditEntry)
class EndpointAuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "endpoint_id", "action", "actor", "workspace"]
    list_filter = ["action"]
    list_select_related = ["actor", "workspace"]
    readonly_fields = ["created_at", "workspace", "endpoint_id", "action", "actor", "changes"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
