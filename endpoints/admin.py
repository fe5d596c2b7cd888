from django.contrib import admin

from .models import Endpoint, EndpointAuditEntry


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    # The signing secret is never shown, in any form.
    list_display = ["url", "workspace", "enabled", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "workspace__slug"]
    list_select_related = ["workspace"]
    fields = ["workspace", "url", "description", "enabled", "subscribed_event_types", "created_at", "updated_at"]
    readonly_fields = fields

    @admin.display(description="event types")
    def subscribed_event_types(self, obj):
        return ", ".join(obj.event_types)

    def has_add_permission(self, request):
        return False  # endpoints get their secret through endpoint_create only

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # endpoints are deleted through endpoint_delete, which keeps the audit trail

    def lookup_allowed(self, lookup, value, request=None):
        # Never filter on the secret from a URL: each answer would reveal a little of it.
        if lookup.split("__", 1)[0] == "secret":
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
