"""Operator routes, mounted under /api/v1/ops/."""

from django.urls import path

from apps.tenants.api.views import OperatorPlanView

urlpatterns = [
    path("tenants/<slug:slug>/plan", OperatorPlanView.as_view(), name="ops-tenant-plan"),
]
