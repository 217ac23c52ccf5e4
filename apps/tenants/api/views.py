"""Plans (operators): validation in serializers, work in services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import NotFound
from apps.core.openapi import BODY_ERRORS, api_responses
from apps.tenants import services
from apps.tenants.api.serializers import (
    PlanChangeSerializer,
    TenantPlanSerializer,
    plan_representation,
)
from apps.tenants.models import Tenant
from apps.tenants.permissions import OPERATOR_AUTHENTICATION, IsStaffOperator


class OperatorTenantView(APIView):
    """Operator endpoints on one tenant, named by slug in the path."""

    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [IsStaffOperator]

    @staticmethod
    def tenant(slug: str) -> Tenant:
        tenant = Tenant.objects.select_related("plan").filter(slug=slug).first()
        if tenant is None:
            raise NotFound(f"no tenant with slug {slug!r}", code="tenant_not_found")
        return tenant


class OperatorPlanView(OperatorTenantView):
    @extend_schema(tags=["ops"], responses=api_responses({200: TenantPlanSerializer}, 404))
    def get(self, request: Request, slug: str) -> Response:
        tenant = self.tenant(slug)
        return Response(plan_representation(tenant, tenant.plan))

    @extend_schema(
        tags=["ops"],
        request=PlanChangeSerializer,
        responses=api_responses({200: TenantPlanSerializer}, 404, BODY_ERRORS),
    )
    def patch(self, request: Request, slug: str) -> Response:
        tenant = self.tenant(slug)
        change = PlanChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        plan = services.change_tenant_plan(tenant, change.changes(), plan_name=change.validated_data.get("plan"))
        return Response(plan_representation(tenant, plan))
