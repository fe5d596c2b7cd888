from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from deliveries import api as deliveries_api
from endpoints import api as endpoints_api

endpoint_urls = [
    path("", endpoints_api.EndpointDetailApi.as_view(), name="endpoint-detail"),
    path("disable/", endpoints_api.EndpointDisableApi.as_view(), name="endpoint-disable"),
    path("enable/", endpoints_api.EndpointEnableApi.as_view(), name="endpoint-enable"),
    path("test/", endpoints_api.EndpointTestApi.as_view(), name="endpoint-test"),
    path("rotate-secret/", endpoints_api.EndpointRotateSecretApi.as_view(), name="endpoint-rotate-secret"),
    path("end-overlap/", endpoints_api.EndpointEndOverlapApi.as_view(), name="endpoint-end-overlap"),
    path("audit/", endpoints_api.EndpointAuditApi.as_view(), name="endpoint-audit"),
]

workspace_urls = [
    path("endpoints/", endpoints_api.EndpointListApi.as_view(), name="endpoint-list"),
    path("endpoints/<int:endpoint_id>/", include(endpoint_urls)),
    path("deliveries/", deliveries_api.DeliveryListApi.as_view(), name="delivery-list"),
    path("deliveries/<uuid:delivery_id>/", deliveries_api.DeliveryDetailApi.as_view(), name="delivery-detail"),
]

urlpatterns = [
    path("event-types/", endpoints_api.EventTypeListApi.as_view(), name="event-type-list"),
    path("workspaces/<slug:slug>/", include(workspace_urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
