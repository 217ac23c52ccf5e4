"""A tenant's usage over a period, by day and model: tasks, prompt and completion tokens.

One function for every reader: the tenant's GET /api/v1/usage/report (JSON or
CSV) and the operators' report in the admin (apps.scheduler.admin), which
must agree to the token. Summed in the database (one GROUP BY over the
tenant's tasks, by the index on tenant and creation time), from each task's
recorded usage: what it was charged (apps.tenants.models.TaskCharge carries
the same figures, but not the model).

Cost: at the prices operators set on each model (per thousand prompt and
completion tokens, apps.catalog.models.LLMModel), the model that ran — a
routed task's chosen candidate, never the router. None (an empty CSV cell)
for a model without prices; the totals' cost sums the priced rows (None
when no row is priced).

A task counts on the day (UTC) it was submitted, whatever its state; one
that has not finished has used no tokens yet (0). A period is whole days,
both ends included.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Count, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from apps.catalog.routing import task_cost
from apps.core.errors import InvalidInput
from apps.tasks.models import Task
from apps.tenants.models import Tenant

# The longest period one report covers (a leap year), and the one given when none is asked for.
MAX_PERIOD_DAYS = 366
DEFAULT_PERIOD_DAYS = 30

CSV_COLUMNS = ("day", "model", "tasks", "prompt_tokens", "completion_tokens", "cost")


@dataclass(frozen=True)
class UsageRow:
    day: date
    model: str
    tasks: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal | None  # at the model's prices; None: the model has none


@dataclass(frozen=True)
class Period:
    since: date
    until: date  # included


def usage_period(since: date | None = None, until: date | None = None) -> Period:
    """The period asked for, with its defaults (until: today, UTC; since: the 30 days
    up to until); InvalidInput naming ``since`` or ``until`` when it cannot be reported."""
    until = until or timezone.now().astimezone(UTC).date()
    since = since or until - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    if since > until:
        raise InvalidInput(f"since ({since}) is after until ({until})", param="since")
    days = (until - since).days + 1
    if days > MAX_PERIOD_DAYS:
        raise InvalidInput(
            f"the period covers {days} days; a report covers at most {MAX_PERIOD_DAYS}", param="until"
        )
    return Period(since, until)


def usage_by_day(tenant: Tenant, period: Period) -> list[UsageRow]:
    """``tenant``'s tasks submitted in ``period``, summed by day and model, in that
    order; days and models without tasks are left out. Only this tenant's tasks, by construction."""
    start = datetime.combine(period.since, time.min, tzinfo=UTC)
    end = datetime.combine(period.until + timedelta(days=1), time.min, tzinfo=UTC)
    rows = (
        Task.objects.for_tenant(tenant)
        .filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "model__name", "model__price_prompt_per_1k", "model__price_completion_per_1k")
        .annotate(
            tasks=Count("pk"),
            prompt=Coalesce(Sum("prompt_tokens"), Value(0)),
            completion=Coalesce(Sum("completion_tokens"), Value(0)),
        )
        .order_by("day", "model__name")
    )
    return [
        UsageRow(
            row["day"], row["model__name"], row["tasks"], row["prompt"], row["completion"],
            _rounded(task_cost(row["prompt"], row["completion"], row["model__price_prompt_per_1k"],
                               row["model__price_completion_per_1k"])),
        )
        for row in rows
    ]


# Costs are shown to the millionth (the prices' own precision).
COST_QUANTUM = Decimal("0.000001")


def _rounded(cost: Decimal | None) -> Decimal | None:
    return None if cost is None else cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


def usage_totals(rows: Iterable[UsageRow]) -> dict[str, Any]:
    """The rows' sums: tasks, prompt_tokens, completion_tokens, and cost (None: no row priced)."""
    totals: dict[str, Any] = {"tasks": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": None}
    for row in rows:
        totals["tasks"] += row.tasks
        totals["prompt_tokens"] += row.prompt_tokens
        totals["completion_tokens"] += row.completion_tokens
        if row.cost is not None:
            totals["cost"] = (totals["cost"] or Decimal(0)) + row.cost
    return totals


def usage_csv(rows: Iterable[UsageRow]) -> str:
    """The rows as CSV, with a header line (CSV_COLUMNS)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row.day.isoformat(), row.model, row.tasks, row.prompt_tokens, row.completion_tokens,
                         "" if row.cost is None else str(row.cost)])
    return out.getvalue()


def usage_csv_filename(tenant: Tenant, period: Period) -> str:
    return f"usage-{tenant.slug}-{period.since}-{period.until}.csv"
