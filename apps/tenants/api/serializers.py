"""Plan changes (validation) and the plan and usage representations."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.scheduler.admission import UsageReport
from apps.tasks.api.serializers import StrictSerializer
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


def usage_representation(report: UsageReport) -> dict[str, Any]:
    budget = report.budget
    return {
        "object": "usage",
        "plan": {"name": report.plan.name, **report.plan.limits()},
        "period": {"type": budget.period, "start": budget.period_start, "end": budget.period_end},
        "budget_tokens": budget.budget_tokens,
        "spent_tokens": budget.spent_tokens,
        "reserved_tokens": budget.reserved_tokens,
        "remaining_tokens": budget.remaining_tokens,
        "rate_limits": {
            name: {"limit": bucket.limit, "remaining": bucket.remaining, "reset_seconds": bucket.reset_seconds}
            for name, bucket in (
                ("requests_per_minute", report.rate_limits.requests),
                ("tokens_per_minute", report.rate_limits.tokens),
            )
        },
        "tasks": {
            "queued": report.queued_tasks,
            "max_queued": report.plan.max_queued,
            "running": report.running_tasks,
            "max_running": report.plan.max_running,
        },
        "by_key": [
            {
                "key_prefix": key.key_prefix,
                "name": key.key_name,
                "prompt_tokens": key.prompt_tokens,
                "completion_tokens": key.completion_tokens,
                "total_tokens": key.total_tokens,
                "reserved_tokens": key.reserved_tokens,
                "tasks": key.tasks,
            }
            for key in budget.by_key
        ],
    }
