"""The usage representation: a tenant's budget, rate limits and queue (GET
/api/v1/usage, and the operators' view of any tenant's); the usage report
by day and model (GET /api/v1/usage/report)."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from apps.core.openapi import object_kind
from apps.core.serializers import StrictSerializer
from apps.scheduler.admission import UsageReport
from apps.scheduler.usage import Period, UsageRow, usage_totals
from apps.tenants.api.serializers import NamedPlanSerializer
from apps.tenants.models import BudgetPeriod


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


# --- Response shapes: what usage_representation builds, as /api/schema/ describes it ------------


class BudgetPeriodWindowSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=BudgetPeriod.choices)
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(allow_null=True, help_text='null for the "none" period')


class RateLimitBucketSerializer(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True, help_text="null: no limit")
    remaining = serializers.IntegerField(allow_null=True)
    reset_seconds = serializers.IntegerField(help_text="until the full limit is back")


class RateLimitsSerializer(serializers.Serializer):
    requests_per_minute = RateLimitBucketSerializer()
    tokens_per_minute = RateLimitBucketSerializer()


class TaskCountsSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="queued or waiting")
    max_queued = serializers.IntegerField(allow_null=True)
    running = serializers.IntegerField()
    max_running = serializers.IntegerField(allow_null=True)


class KeyUsageSerializer(serializers.Serializer):
    key_prefix = serializers.CharField(allow_null=True, help_text="null: tasks of a key deleted since")
    name = serializers.CharField(allow_blank=True)
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    reserved_tokens = serializers.IntegerField()
    tasks = serializers.IntegerField()


class UsageSerializer(serializers.Serializer):
    """A tenant's budget in its period, its rate limits and its queue, per key too."""

    object = object_kind("usage")
    plan = NamedPlanSerializer()
    period = BudgetPeriodWindowSerializer()
    budget_tokens = serializers.IntegerField(allow_null=True)
    spent_tokens = serializers.IntegerField()
    reserved_tokens = serializers.IntegerField()
    remaining_tokens = serializers.IntegerField(allow_null=True)
    rate_limits = RateLimitsSerializer()
    tasks = TaskCountsSerializer()
    by_key = KeyUsageSerializer(many=True)


class TenantUsageSerializer(UsageSerializer):
    """The usage of the tenant named in the path (operators)."""

    tenant = serializers.SlugField()


# --- The usage report (GET /api/v1/usage/report) -------------------------------------------------


class UsageReportQuerySerializer(StrictSerializer):
    since = serializers.DateField(
        required=False, input_formats=["%Y-%m-%d"],
        help_text="first day (UTC), YYYY-MM-DD; default: 29 days before until",
    )
    until = serializers.DateField(
        required=False, input_formats=["%Y-%m-%d"], help_text="last day (UTC, included), YYYY-MM-DD; default: today"
    )
    # Read by DRF's content negotiation (URL_FORMAT_OVERRIDE); named here so it is not an unknown field.
    format = serializers.ChoiceField(choices=["json", "csv"], required=False)


def _cost() -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=20, decimal_places=6, allow_null=True,
        help_text="at the model's prices per 1,000 tokens, as a decimal string; null: no price set",
    )


class UsageReportRowSerializer(serializers.Serializer):
    day = serializers.DateField()
    model = serializers.CharField()
    tasks = serializers.IntegerField(help_text="tasks submitted that day")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = _cost()


class UsageTotalsSerializer(serializers.Serializer):
    tasks = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = _cost()


class UsageReportSerializer(serializers.Serializer):
    """The calling tenant's tasks and tokens over a period, by day (UTC) and model."""

    object = object_kind("usage_report")
    since = serializers.DateField()
    until = serializers.DateField()
    rows = UsageReportRowSerializer(many=True)
    totals = UsageTotalsSerializer()


def _cost_text(cost: Decimal | None) -> str | None:
    return None if cost is None else str(cost)


def usage_report_representation(period: Period, rows: list[UsageRow]) -> dict[str, Any]:
    return {
        "object": "usage_report",
        "since": period.since,
        "until": period.until,
        "rows": [{**asdict(row), "cost": _cost_text(row.cost)} for row in rows],
        "totals": {**(totals := usage_totals(rows)), "cost": _cost_text(totals["cost"])},
    }
