from django.urls import include, path

from deliveries.views import DeliveryDetailView

from . import views

app_name = "endpoints"

endpoint_urls = [
    path("", views.EndpointDetailView.as_view(), name="detail"),
    path("edit/", views.EndpointEditView.as_view(), name="edit"),
    path("secret/", views.EndpointSecretView.as_view(), name="secret"),
    path("test/", views.EndpointSendTestView.as_view(), name="test"),
    path("disable/", views.EndpointDisableView.as_view(), name="disable"),
    path("enable/", views.EndpointEnableView.as_view(), name="enable"),
    path("rotate-secret/", views.EndpointRotateSecretView.as_view(), name="rotate"),
    path("end-overlap/", views.EndpointEndOverlapView.as_view(), name="end-overlap"),
    path("delete/", views.EndpointDeleteView.as_view(), name="delete"),
]

urlpatterns = [
    path("", views.EndpointListView.as_view(), name="list"),
    path("new/", views.EndpointCreateView.as_view(), name="new"),
    path("<int:endpoint_id>/", include(endpoint_urls)),
    path("deliveries/<uuid:delivery_id>/", DeliveryDetailView.as_view(), name="delivery"),
]
