from django.contrib import admin

from .models import Endpoint


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
