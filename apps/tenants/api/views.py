"""Plans (operators); a tenant's own keys and members: validation in serializers,
work in services (apps.tenants.services, .keys, .members)."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import NotFound
from apps.core.openapi import BODY_ERRORS, api_responses
from apps.tenants import keys, members, services
from apps.tenants.api.serializers import (
    IssuedKeySerializer,
    KeyCreateSerializer,
    KeyListSerializer,
    KeySerializer,
    MemberAddSerializer,
    MemberChangeSerializer,
    MemberListSerializer,
    MemberSerializer,
    PlanChangeSerializer,
    TenantPlanSerializer,
    issued_key_representation,
    key_representation,
    member_representation,
    plan_representation,
)
from apps.tenants.models import Scope, Tenant
from apps.tenants.permissions import OPERATOR_AUTHENTICATION, HasOperatorPermission, api_key_of, tenant_of


class OperatorTenantView(APIView):
    """Operator endpoints on one tenant, named by slug in the path: an operator with
    the model permission acts on every tenant, one with an object permission on a
    tenant (HasOperatorPermission) on that tenant only."""

    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOperatorPermission]
    operator_permissions: dict[str, str]  # HTTP method -> the admin's permission for the same action
    acts_on_one_tenant = True

    def tenant(self, slug: str) -> Tenant:
        tenant = Tenant.objects.select_related("plan").filter(slug=slug).first()
        if tenant is None:
            raise NotFound(f"no tenant with slug {slug!r}", code="tenant_not_found")
        self.check_object_permissions(self.request, tenant)
        return tenant


class OperatorPlanView(OperatorTenantView):
    operator_permissions = {"GET": "tenants.view_plan", "PATCH": "tenants.change_plan"}

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


# --- Tenant self-service: API keys and members; the work is in apps.tenants.keys and .members --------


def _listed(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": items}


class KeyListView(APIView):
    required_scope = Scope.KEYS_MANAGE.value

    @extend_schema(tags=["keys"], operation_id="keys_list", responses=api_responses({200: KeyListSerializer}))
    def get(self, request: Request) -> Response:
        return Response(_listed([key_representation(key) for key in keys.keys_of(tenant_of(request))]))

    @extend_schema(
        tags=["keys"], request=KeyCreateSerializer, responses=api_responses({201: IssuedKeySerializer}, BODY_ERRORS)
    )
    def post(self, request: Request) -> Response:
        body = KeyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        issued = keys.create_key(
            api_key_of(request),
            name=body.validated_data["name"],
            scopes=body.validated_data["scopes"],
            expires_at=body.validated_data.get("expires_at"),
        )
        return Response(issued_key_representation(issued), status=status.HTTP_201_CREATED)


class KeyDetailView(APIView):
    required_scope = Scope.KEYS_MANAGE.value

    @extend_schema(tags=["keys"], responses=api_responses({200: KeySerializer}, 404))
    def get(self, request: Request, key_id: uuid.UUID) -> Response:
        return Response(key_representation(keys.key_of(tenant_of(request), key_id)))

    @extend_schema(tags=["keys"], operation_id="keys_revoke", responses=api_responses({200: KeySerializer}, 404))
    def delete(self, request: Request, key_id: uuid.UUID) -> Response:
        """Revoke the key (it stays listed, with revoked_at)."""
        return Response(key_representation(keys.revoke_key(api_key_of(request), key_id)))


class MemberListView(APIView):
    required_scope = Scope.MEMBERS_MANAGE.value

    @extend_schema(tags=["members"], operation_id="members_list", responses=api_responses({200: MemberListSerializer}))
    def get(self, request: Request) -> Response:
        return Response(_listed([member_representation(m) for m in members.members_of(tenant_of(request))]))

    @extend_schema(
        tags=["members"],
        request=MemberAddSerializer,
        responses=api_responses({201: MemberSerializer}, BODY_ERRORS, 409),
    )
    def post(self, request: Request) -> Response:
        body = MemberAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        membership = members.add_member(
            api_key_of(request), body.validated_data["username"], body.validated_data["role"]
        )
        return Response(member_representation(membership), status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    required_scope = Scope.MEMBERS_MANAGE.value

    @extend_schema(tags=["members"], responses=api_responses({200: MemberSerializer}, 404))
    def get(self, request: Request, username: str) -> Response:
        return Response(member_representation(members.member_of(tenant_of(request), username)))

    @extend_schema(
        tags=["members"],
        request=MemberChangeSerializer,
        responses=api_responses({200: MemberSerializer}, 404, 409, BODY_ERRORS),
    )
    def patch(self, request: Request, username: str) -> Response:
        body = MemberChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        membership = members.change_role(api_key_of(request), username, body.validated_data["role"])
        return Response(member_representation(membership))

    @extend_schema(tags=["members"], responses=api_responses({204: None}, 404, 409))
    def delete(self, request: Request, username: str) -> Response:
        members.remove_member(api_key_of(request), username)
        return Response(status=status.HTTP_204_NO_CONTENT)
