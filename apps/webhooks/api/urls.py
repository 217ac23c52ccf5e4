"""A tenant's webhooks, mounted under /api/v1/ (its API key decides who may)."""

from django.urls import path

from apps.webhooks.api.views import DeliveryListView, WebhookSecretView, WebhookSettingsView

urlpatterns = [
    path("webhooks/settings", WebhookSettingsView.as_view(), name="webhook-settings"),
    path("webhooks/secret", WebhookSecretView.as_view(), name="webhook-secret"),
    path("webhooks/deliveries", DeliveryListView.as_view(), name="webhook-deliveries"),
]
