"""Usage: what a tenant has used and has left (tenants, and operators for any tenant)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.openapi import api_responses
from apps.scheduler.admission import usage_report
from apps.scheduler.api.serializers import TenantUsageSerializer, UsageSerializer, usage_representation
from apps.tenants.api.views import OperatorTenantView
from apps.tenants.models import Scope
from apps.tenants.permissions import tenant_of


class UsageView(APIView):
    """GET /api/v1/usage: the calling tenant's budget, rate limits and queue, per key too."""

    required_scope = Scope.USAGE_READ.value

    @extend_schema(tags=["usage"], responses=api_responses({200: UsageSerializer}))
    def get(self, request: Request) -> Response:
        return Response(usage_representation(usage_report(tenant_of(request))))


class OperatorUsageView(OperatorTenantView):
    # The admin shows usage as the budget ledger.
    operator_permissions = {"GET": "tenants.view_budgetledger"}

    @extend_schema(tags=["ops"], responses=api_responses({200: TenantUsageSerializer}, 404))
    def get(self, request: Request, slug: str) -> Response:
        tenant = self.tenant(slug)
        return Response({"tenant": tenant.slug, **usage_representation(usage_report(tenant))})
