"""The operations dashboard's figures: one snapshot of the platform, read live.

``build_snapshot()`` answers what an operator asks first: is any model's
queue backing up, how fast is each model going, which worker died, which
tenant is about to hit a limit, what failed and why. Each part is a handful of
aggregate queries (grouped and counted in SQL, never one query per row), and
every list is capped, so the page costs the same with ten tasks or ten million.

Nothing a tenant wrote or a model generated is read: the queries name their
columns (``values()``), and no ciphertext column is among them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, FloatField, Min, Prefetch, Q, Sum, Window
from django.db.models.functions import RowNumber, TruncMinute
from django.utils import timezone

from apps.catalog.models import LLMModel
from apps.tasks.models import TERMINAL_STATES, Task, TaskState
from apps.tenants.models import BudgetLedger, BudgetPeriod, TaskCharge, Tenant
from apps.tenants.services import period_bounds
from apps.workers.models import RUNNING_STATES, Worker

WINDOW_MINUTES = 60  # throughput, tokens/s and time to first token: per-minute buckets over the last hour
RATE_SECONDS = 60  # the plans' rpm and tpm are per minute
FAILURES_SHOWN = 20
TENANTS_SHOWN = 50
WORKERS_SHOWN = 200
NEAR_LIMIT = 0.8  # a tenant at or above this share of any limit is near it
PENDING_STATES = (TaskState.WAITING, TaskState.QUEUED)


@dataclass(frozen=True)
class ModelRow:
    name: str
    enabled: bool
    queued: int
    running: int
    oldest_wait_seconds: float | None  # how long the longest-queued task has waited; None: none queued
    finished_last_hour: int  # ended (succeeded, failed or cancelled) in the window
    failed_last_hour: int
    completion_tokens_last_hour: int
    tokens_per_second: float  # completion tokens generated per second, averaged over the window
    ttft_p50_seconds: float | None  # time to first token (first_token_at - queued_at) of tasks ended in the window
    ttft_p99_seconds: float | None


@dataclass(frozen=True)
class ModelSeries:
    model: str
    tasks: list[int]  # tasks ended in each minute, oldest first
    tokens_per_second: list[float]  # completion tokens per second in each minute


@dataclass(frozen=True)
class Throughput:
    minutes: list[datetime]  # each bucket's start (UTC), oldest first; the last is the current minute
    series: list[ModelSeries]  # the models with tasks ended in the window


@dataclass(frozen=True)
class GpuRow:
    index: int | None
    name: str
    memory_total: int | None  # bytes
    memory_used: int | None
    utilization: float | None  # percent


@dataclass(frozen=True)
class WorkerRow:
    name: str
    host: str
    status: str  # active, draining, drained, or lost (heartbeats stopped)
    lost: bool
    slots: int
    busy: int  # tasks in flight at its last heartbeat
    models: list[str]
    gpus: list[GpuRow]
    heartbeat_age_seconds: float


@dataclass(frozen=True)
class LimitUse:
    name: str  # budget, queued, running, requests/min, tokens/min
    used: int
    limit: int | None  # None: no limit
    fraction: float | None  # used / limit; None: no limit


@dataclass(frozen=True)
class TenantRow:
    slug: str
    name: str
    paused: bool
    plan: str
    limits: list[LimitUse]
    highest_fraction: float | None
    near_limit: bool  # some limit is NEAR_LIMIT used or more


@dataclass(frozen=True)
class FailureRow:
    task_id: str
    finished_at: datetime | None
    tenant: str
    model: str
    error_code: str
    error_message: str


@dataclass(frozen=True)
class Snapshot:
    generated_at: datetime
    window_minutes: int
    near_limit: float
    has_tasks: bool  # any task at all, ever (the charts' empty state)
    models: list[ModelRow]
    throughput: Throughput
    workers: list[WorkerRow]
    tenants: list[TenantRow]  # active ones (usage, pending work or paused), nearest their limits first
    tenants_total: int
    failures: list[FailureRow]  # the latest failed tasks, newest first

    def as_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def build_snapshot(now: datetime | None = None) -> Snapshot:
    now = now or timezone.now()
    current_minute = now.replace(second=0, microsecond=0)
    since = current_minute - timedelta(minutes=WINDOW_MINUTES - 1)
    models = list(LLMModel.objects.order_by("name").values_list("pk", "name", "enabled"))
    names = {pk: name for pk, name, _ in models}
    throughput, totals = _throughput(since, [since + timedelta(minutes=i) for i in range(WINDOW_MINUTES)], names)
    return Snapshot(
        generated_at=now,
        window_minutes=WINDOW_MINUTES,
        near_limit=NEAR_LIMIT,
        has_tasks=Task.objects.exists(),
        models=_model_rows(models, totals, _queues(), _ttft(since, 50), _ttft(since, 99), now),
        throughput=throughput,
        workers=_workers(now),
        tenants=_tenants(now),
        tenants_total=Tenant.objects.count(),
        failures=_failures(),
    )


# --- Models -----------------------------------------------------------------------------------


def _queues() -> dict[Any, Mapping[str, Any]]:
    """Each model's queued and running tasks and its oldest queued task's time; one query."""
    rows = (
        Task.objects.filter(state__in=(TaskState.QUEUED, TaskState.RUNNING))
        .values("model")
        .annotate(
            queued=Count("pk", filter=Q(state=TaskState.QUEUED)),
            running=Count("pk", filter=Q(state=TaskState.RUNNING)),
            oldest=Min("queued_at", filter=Q(state=TaskState.QUEUED)),
        )
        .order_by()
    )
    return {row["model"]: row for row in rows}


def _throughput(
    since: datetime, minutes: list[datetime], names: Mapping[Any, str]
) -> tuple[Throughput, dict[Any, dict[str, int]]]:
    """Tasks ended and tokens generated per model and minute (one grouped query), and each model's totals."""
    rows = (
        Task.objects.filter(state__in=TERMINAL_STATES, finished_at__gte=since)
        .annotate(minute=TruncMinute("finished_at"))
        .values("model", "minute")
        .annotate(
            tasks=Count("pk"),
            failed=Count("pk", filter=Q(state=TaskState.FAILED)),
            tokens=Sum("completion_tokens", default=0),
        )
        .order_by()
    )
    slot = {minute: i for i, minute in enumerate(minutes)}
    tasks: dict[Any, list[int]] = {}
    tokens: dict[Any, list[int]] = {}
    totals: dict[Any, dict[str, int]] = {}
    for row in rows:
        i = slot.get(row["minute"])
        if i is None:  # finished "in the future" (a clock ahead of this one): not in the window
            continue
        model = row["model"]
        tasks.setdefault(model, [0] * len(minutes))[i] += row["tasks"]
        tokens.setdefault(model, [0] * len(minutes))[i] += row["tokens"]
        total = totals.setdefault(model, {"tasks": 0, "failed": 0, "tokens": 0})
        total["tasks"] += row["tasks"]
        total["failed"] += row["failed"]
        total["tokens"] += row["tokens"]
    series = [
        ModelSeries(model=names[model], tasks=tasks[model], tokens_per_second=[n / 60 for n in tokens[model]])
        for model in sorted(tasks, key=lambda m: names.get(m, ""))
        if model in names
    ]
    return Throughput(minutes=minutes, series=series), totals


def _ttft(since: datetime, percent: int) -> dict[Any, float]:
    """Each model's time to first token at ``percent`` (nearest rank) over tasks ended since ``since``.

    One query: the database ranks each model's times (a window function) and
    keeps the row at rank ceil(percent·n/100), written without CEIL (which
    SQLite may lack) as rank·100 >= percent·n > (rank - 1)·100.
    """
    ttft = ExpressionWrapper(F("first_token_at") - F("queued_at"), output_field=DurationField())
    rows = (
        Task.objects.filter(
            state__in=TERMINAL_STATES, finished_at__gte=since, first_token_at__isnull=False, queued_at__isnull=False
        )
        .annotate(
            ttft=ttft,
            ttft_rank=Window(RowNumber(), partition_by=[F("model")], order_by=ttft.asc()),
            ttft_count=Window(Count("pk"), partition_by=[F("model")]),
        )
        .annotate(wanted=ExpressionWrapper(F("ttft_count") * percent / 100.0, output_field=FloatField()))
        .filter(ttft_rank__gte=F("wanted"), ttft_rank__lt=F("wanted") + 1)
        .values("model", "ttft")
        .order_by()
    )
    return {row["model"]: max(row["ttft"].total_seconds(), 0.0) for row in rows}


def _model_rows(
    models: Iterable[tuple[Any, str, bool]],
    totals: Mapping[Any, Mapping[str, int]],
    queues: Mapping[Any, Mapping[str, Any]],
    p50: Mapping[Any, float],
    p99: Mapping[Any, float],
    now: datetime,
) -> list[ModelRow]:
    rows = []
    for pk, name, enabled in models:
        queue = queues.get(pk, {})
        total = totals.get(pk, {})
        oldest = queue.get("oldest")
        rows.append(ModelRow(
            name=name,
            enabled=enabled,
            queued=queue.get("queued", 0),
            running=queue.get("running", 0),
            oldest_wait_seconds=None if oldest is None else max((now - oldest).total_seconds(), 0.0),
            finished_last_hour=total.get("tasks", 0),
            failed_last_hour=total.get("failed", 0),
            completion_tokens_last_hour=total.get("tokens", 0),
            tokens_per_second=total.get("tokens", 0) / (WINDOW_MINUTES * 60),
            ttft_p50_seconds=p50.get(pk),
            ttft_p99_seconds=p99.get(pk),
        ))
    return rows


# --- Workers ----------------------------------------------------------------------------------


def _workers(now: datetime) -> list[WorkerRow]:
    """The running workers (lost ones included, first): two queries, the second for their models."""
    workers = (
        Worker.objects.filter(state__in=RUNNING_STATES)
        .only("name", "host", "state", "slots", "in_flight", "device_info", "last_heartbeat_at")
        .prefetch_related(Prefetch("models", queryset=LLMModel.objects.only("name").order_by("name")))
        .order_by("last_heartbeat_at", "name")[:WORKERS_SHOWN]
    )
    rows = [
        WorkerRow(
            name=worker.name,
            host=worker.host,
            status=worker.status,
            lost=worker.is_lost,
            slots=worker.slots,
            busy=worker.in_flight,
            models=[model.name for model in worker.models.all()],
            gpus=_gpus(worker.device_info),
            heartbeat_age_seconds=max((now - worker.last_heartbeat_at).total_seconds(), 0.0),
        )
        for worker in workers
    ]
    return sorted(rows, key=lambda row: (not row.lost, row.name))


def _gpus(device_info: Any) -> list[GpuRow]:
    """The GPUs a worker's heartbeat reported (``device_info["gpus"]``); whatever is missing stays None."""
    reported = device_info.get("gpus") if isinstance(device_info, dict) else None
    gpus = []
    for gpu in reported if isinstance(reported, list) else []:
        if not isinstance(gpu, dict):
            continue
        total, free = _number(gpu.get("memory_total")), _number(gpu.get("memory_free"))
        utilization = _number(gpu.get("utilization"))
        gpus.append(GpuRow(
            index=_number(gpu.get("index")),
            name=str(gpu.get("name") or ""),
            memory_total=total,
            memory_used=None if total is None or free is None else max(total - free, 0),
            utilization=None if utilization is None else float(utilization),
        ))
    return gpus


def _number(value: Any) -> int | None:
    """A reported figure as an integer; None when missing or not a finite number (a heartbeat is free-form)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


# --- Tenants ----------------------------------------------------------------------------------


def _tenants(now: datetime) -> list[TenantRow]:
    """Tenants with usage this period, pending work or a paused account, nearest their limits first.

    Four grouped queries (tasks, budget ledgers, the last minute's admissions,
    the tenants themselves with their plans), whatever the number of tenants.
    """
    ledger_periods = Q()
    for period in BudgetPeriod.values:
        ledger_periods |= Q(period=period, period_start=period_bounds(period, now)[0])
    ledgers = BudgetLedger.objects.filter(ledger_periods)
    tasks = Task.objects.filter(state__in=(*PENDING_STATES, TaskState.RUNNING))
    charges = TaskCharge.objects.filter(created_at__gt=now - timedelta(seconds=RATE_SECONDS))

    budget = {(row["tenant"], row["period"]): row for row in ledgers.values("tenant", "period", "spent_tokens",
                                                                             "reserved_tokens")}
    work = {
        row["tenant"]: row
        for row in tasks.values("tenant").annotate(
            pending=Count("pk", filter=Q(state__in=PENDING_STATES)),
            running=Count("pk", filter=Q(state=TaskState.RUNNING)),
        ).order_by()
    }
    recent = {
        row["tenant"]: row
        for row in charges.values("tenant").annotate(requests=Count("pk"), tokens=Sum("reserved_tokens")).order_by()
    }
    shown = (
        Tenant.objects.filter(
            Q(active=False)
            | Q(pk__in=ledgers.values("tenant"))
            | Q(pk__in=tasks.values("tenant"))
            | Q(pk__in=charges.values("tenant"))
        )
        .select_related("plan")
        .only("slug", "name", "active", "plan")
    )
    rows = []
    for tenant in shown:
        plan = tenant.plan
        spent: Mapping[str, Any] = budget.get((tenant.pk, plan.budget_period), {})
        pending: Mapping[str, Any] = work.get(tenant.pk, {})
        minute: Mapping[str, Any] = recent.get(tenant.pk, {})
        limits = [
            _use("budget", (spent.get("spent_tokens") or 0) + (spent.get("reserved_tokens") or 0), plan.budget_tokens),
            _use("queued", pending.get("pending", 0), plan.max_queued),
            _use("running", pending.get("running", 0), plan.max_running),
            _use("requests/min", minute.get("requests") or 0, plan.rpm),
            _use("tokens/min", minute.get("tokens") or 0, plan.tpm),
        ]
        fractions = [limit.fraction for limit in limits if limit.fraction is not None]
        highest = max(fractions) if fractions else None
        rows.append(TenantRow(
            slug=tenant.slug,
            name=tenant.name,
            paused=not tenant.active,
            plan=plan.name,
            limits=limits,
            highest_fraction=highest,
            near_limit=highest is not None and highest >= NEAR_LIMIT,
        ))
    rows.sort(key=lambda row: (-(row.highest_fraction or 0.0), row.slug))
    return rows[:TENANTS_SHOWN]


def _use(name: str, used: int, limit: int | None) -> LimitUse:
    if limit is None:
        return LimitUse(name=name, used=used, limit=None, fraction=None)
    # A zero limit admits nothing: fully used.
    return LimitUse(name=name, used=used, limit=limit, fraction=used / limit if limit else 1.0)


# --- Failures ---------------------------------------------------------------------------------


def _failures() -> list[FailureRow]:
    rows = (
        Task.objects.filter(state=TaskState.FAILED)
        .order_by("-finished_at")
        .values("pk", "finished_at", "tenant__slug", "model__name", "error_code", "error_message")[:FAILURES_SHOWN]
    )
    return [
        FailureRow(
            task_id=str(row["pk"]),
            finished_at=row["finished_at"],
            tenant=row["tenant__slug"],
            model=row["model__name"],
            error_code=row["error_code"],
            error_message=row["error_message"],
        )
        for row in rows
    ]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value
