"""Operator routes, mounted under /api/v1/ops/."""

from django.urls import path

from apps.tenants.api.views import OperatorPlanView, OperatorUsageView

urlpatterns = [
    path("tenants/<slug:slug>/plan", OperatorPlanView.as_view(), name="ops-tenant-plan"),
    path("tenants/<slug:slug>/usage", OperatorUsageView.as_view(), name="ops-tenant-usage"),
]
