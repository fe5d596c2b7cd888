from django.contrib import admin

from .models import Delivery, DeliveryAttempt, Event


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is never edited."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "duration_ms", "response_status", "outcome", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "workspace", "created_at"]
    list_filter = ["type"]
    search_fields = ["id"]
    list_select_related = ["workspace"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "event", "endpoint", "status", "attempt_count", "last_status_code", "created_at"]
    list_filter = ["status"]
    search_fields = ["=id", "=event__id"]
    list_select_related = ["event", "endpoint"]
    inlines = [DeliveryAttemptInline]
