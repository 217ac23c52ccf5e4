"""Plan changes (validation) and the plan representation."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.serializers import StrictSerializer
from apps.tenants.models import BudgetPeriod, Plan, PriorityClass, Tenant

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
