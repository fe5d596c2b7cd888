from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("workspaces/<slug:slug>/settings/webhooks/", include("endpoints.urls")),
    path("docs/receiving/", views.docs_receiving, name="docs-receiving"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(("clientflow_webhooks.api_urls", "api"))),
]


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Under /api/ a request Django itself refuses (too many fields, …) answers in JSON."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Under /api/ a URL that matches nothing answers like the API does: JSON."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


handler400 = bad_request
handler404 = not_found
handler500 = server_error
