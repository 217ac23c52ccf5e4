"""Plan changes (validation) and the plan representation; tenants' keys and members."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework import serializers

from apps.core.openapi import list_of, object_kind
from apps.core.serializers import StrictSerializer
from apps.tenants.models import (
    ALL_SCOPES,
    ApiKey,
    BudgetPeriod,
    Membership,
    Plan,
    PriorityClass,
    Role,
    Scope,
    Tenant,
)
from apps.tenants.services import IssuedKey

MAX_INT = 2**31 - 1  # PositiveIntegerField's range on every database
MAX_BIGINT = 2**63 - 1


def _limit(max_value: int = MAX_INT) -> serializers.IntegerField:
    """A limit: a non-negative integer, or null for "no limit"."""
    return serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=max_value)


class PlanChangeSerializer(StrictSerializer):
    """PATCH /api/v1/ops/tenants/{slug}/plan: only the fields given change."""

    plan = serializers.CharField(required=False, max_length=100, help_text="move the tenant to this named plan first")
    rpm = _limit()
    tpm = _limit()
    budget_tokens = _limit(MAX_BIGINT)
    budget_period = serializers.ChoiceField(choices=BudgetPeriod.choices, required=False)
    max_running = _limit()
    max_queued = _limit()
    weight = serializers.FloatField(required=False, min_value=0.001, max_value=1_000_000)
    max_priority = serializers.ChoiceField(choices=PriorityClass.choices, required=False)

    def changes(self) -> dict[str, Any]:
        return {field: value for field, value in self.validated_data.items() if field != "plan"}


def plan_representation(tenant: Tenant, plan: Plan) -> dict[str, Any]:
    """What set_plan prints and the ops plan endpoints answer."""
    return {"tenant": tenant.slug, "plan": plan.name, **plan.limits()}


# --- Response shapes: what the functions above build, as /api/schema/ describes it -----------


class PlanLimitsSerializer(serializers.Serializer):
    """A plan's limits (Plan.limits()); null: no limit."""

    rpm = serializers.IntegerField(allow_null=True, help_text="requests per minute")
    tpm = serializers.IntegerField(allow_null=True, help_text="tokens per minute")
    budget_tokens = serializers.IntegerField(allow_null=True, help_text="tokens per budget period")
    budget_period = serializers.ChoiceField(choices=BudgetPeriod.choices)
    max_running = serializers.IntegerField(allow_null=True)
    max_queued = serializers.IntegerField(allow_null=True)
    weight = serializers.FloatField(help_text="fair-share weight")
    max_priority = serializers.ChoiceField(choices=PriorityClass.choices, help_text="the highest class allowed")


class NamedPlanSerializer(PlanLimitsSerializer):
    name = serializers.CharField()


class TenantPlanSerializer(PlanLimitsSerializer):
    """A tenant's plan, as set_plan prints it."""

    tenant = serializers.SlugField()
    plan = serializers.CharField(help_text="the plan's name")


# --- Tenant self-service: API keys and members (/api/v1/keys, /api/v1/members) ----------------


class KeyCreateSerializer(StrictSerializer):
    """POST /api/v1/keys."""

    name = serializers.CharField(max_length=100, help_text="a label for people")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices),
        allow_empty=False,
        help_text="what the key may do; never more than the calling key holds",
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="when it stops working; never later than the calling key"
    )

    def validate_scopes(self, scopes: list[str]) -> list[str]:
        return list(dict.fromkeys(scopes))  # each once, in the order given


def _scopes_in_order(scopes: Iterable[str]) -> list[str]:
    held = set(scopes)
    return [scope for scope in ALL_SCOPES if scope in held]


def key_representation(api_key: ApiKey) -> dict[str, Any]:
    """A key as its tenant sees it: never its secret or its hash."""
    return {
        "id": str(api_key.id),
        "object": "api_key",
        "name": api_key.name,
        "prefix": api_key.prefix,
        "scopes": list(api_key.scopes),
        "effective_scopes": _scopes_in_order(api_key.effective_scopes()),
        "created_by": api_key.created_by.get_username() if api_key.created_by is not None else None,
        "created_at": api_key.created_at,
        "expires_at": api_key.expires_at,
        "last_used_at": api_key.last_used_at,
        "revoked_at": api_key.revoked_at,
    }


def issued_key_representation(issued: IssuedKey) -> dict[str, Any]:
    return {**key_representation(issued.api_key), "key": issued.secret}


class KeySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = object_kind("api_key")
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="the public part of the key (lla_<prefix>_…)")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), help_text="as granted")
    effective_scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices),
        help_text="what it may do now: its scopes, as far as its creator's current role allows",
    )
    created_by = serializers.CharField(allow_null=True, help_text="the member it was made for; null: an operator")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="to within a minute")
    revoked_at = serializers.DateTimeField(allow_null=True)


class IssuedKeySerializer(KeySerializer):
    key = serializers.CharField(help_text="the secret key: shown in this response only")


class MemberAddSerializer(StrictSerializer):
    """POST /api/v1/members: an existing user joins the tenant."""

    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberChangeSerializer(StrictSerializer):
    """PATCH /api/v1/members/{username}."""

    role = serializers.ChoiceField(choices=Role.choices)


def member_representation(membership: Membership) -> dict[str, Any]:
    return {
        "object": "member",
        "username": membership.user.get_username(),
        "role": membership.role,
        "created_at": membership.created_at,
    }


class MemberSerializer(serializers.Serializer):
    object = object_kind("member")
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField(help_text="when they joined the tenant")


KeyListSerializer = list_of(KeySerializer)
MemberListSerializer = list_of(MemberSerializer)
