"""Operator routes, mounted under /api/v1/ops/."""

from django.urls import path

from apps.scheduler.api.views import OperatorUsageView

urlpatterns = [
    path("tenants/<slug:slug>/usage", OperatorUsageView.as_view(), name="ops-tenant-usage"),
]
