"""The gauges GET /metrics reads from the database at scrape time.

A queue's depth, a worker's heartbeat age or a tenant's budget are facts of
the database, the same whichever process is asked; kept per process (as the
counters of apps.core.metrics are) they would be summed over processes that
each know only a part. So they are computed here, on each scrape, by a
prometheus_client custom collector (``DatabaseGauges``), a handful of
aggregate queries whatever the number of tasks. Series:

======================================================  ========================================
llmagentos_tasks_in_state{model,state}                  unfinished tasks: waiting, queued, running
llmagentos_queue_depth{model}                           queued tasks (ready, not yet claimed)
llmagentos_queue_oldest_wait_seconds{model}             the oldest queued task's wait (0: none)
llmagentos_worker_running_tasks{worker}                 tasks running with the worker's lease
llmagentos_worker_slots_busy{worker}                    slots in use at its last heartbeat
llmagentos_worker_slots_total{worker}                   its slots
llmagentos_worker_heartbeat_age_seconds{worker}         since its last heartbeat
llmagentos_worker_lost{worker}                          1: its heartbeats stopped (WORKER_LOST_SECONDS)
llmagentos_worker_gpu_memory_total_bytes{worker,gpu}    as its heartbeat reported
llmagentos_worker_gpu_memory_free_bytes{worker,gpu}
llmagentos_worker_gpu_utilization_percent{worker,gpu}
llmagentos_tenant_budget_used_ratio{tenant}             spent / budget this period (budgeted tenants)
llmagentos_metrics_database_up                          0: the database could not be read (no gauges)
======================================================  ========================================

Workers are those in a running state (active, draining, drained), lost ones
included; models are the enabled ones, each with its zeros, so a dashboard
shows an idle model rather than no data.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.catalog.models import LLMModel
from apps.core.metrics import PREFIX
from apps.tasks.models import Task, TaskState
from apps.tenants.models import BudgetLedger, Tenant
from apps.tenants.services import period_bounds
from apps.workers.models import RUNNING_STATES, Worker

logger = logging.getLogger(__name__)

UNFINISHED_STATES = (TaskState.WAITING, TaskState.QUEUED, TaskState.RUNNING)


class DatabaseGauges(Collector):
    """Reads the gauges above on each ``collect()`` (each scrape)."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_metrics_database_up", "1: the database-derived gauges were read")
        try:
            families = list(_families(timezone.now()))
        except DatabaseError as exc:  # the process's own counters still answer
            logger.warning("metrics: database gauges unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def describe(self) -> Iterable[Metric]:
        return ()  # not known before reading: the registry must not collect to find out


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=labels)


def _families(now: datetime) -> Iterator[Metric]:
    yield from _task_families(now)
    yield from _worker_families(now)
    yield _budget_family(now)


def _task_families(now: datetime) -> Iterator[Metric]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    oldest: dict[str, datetime] = {}
    rows = (
        Task.objects.filter(state__in=UNFINISHED_STATES)
        .values_list("model__name", "state")
        .annotate(tasks=Count("id"), oldest=Min("queued_at"))
        .order_by()
    )
    for model, state, tasks, queued_since in rows:
        counts[model, state] += tasks
        if state == TaskState.QUEUED and queued_since is not None:
            oldest[model] = min(queued_since, oldest.get(model, queued_since))
    models = sorted(set(LLMModel.objects.filter(enabled=True).values_list("name", flat=True)) | {m for m, _ in counts})

    in_state = _gauge("tasks_in_state", "Unfinished tasks by model and state", ["model", "state"])
    depth = _gauge("queue_depth", "Queued tasks (ready, not yet claimed by a worker)", ["model"])
    wait = _gauge("queue_oldest_wait_seconds", "How long the oldest queued task has waited (0: none)", ["model"])
    for model in models:
        for state in UNFINISHED_STATES:
            in_state.add_metric([model, state], counts.get((model, state), 0))
        depth.add_metric([model], counts.get((model, TaskState.QUEUED), 0))
        since = oldest.get(model)
        wait.add_metric([model], max((now - since).total_seconds(), 0.0) if since else 0.0)
    yield from (in_state, depth, wait)


def _worker_families(now: datetime) -> Iterator[Metric]:
    running = dict(
        Task.objects.filter(state=TaskState.RUNNING).values_list("worker_name").annotate(n=Count("id")).order_by()
    )
    workers = Worker.objects.filter(state__in=RUNNING_STATES).only(
        "name", "slots", "in_flight", "last_heartbeat_at", "device_info", "state"
    )
    tasks = _gauge("worker_running_tasks", "Tasks running under the worker's lease", ["worker"])
    busy = _gauge("worker_slots_busy", "Slots in use at the worker's last heartbeat", ["worker"])
    total = _gauge("worker_slots_total", "The worker's slots (tasks it runs at once)", ["worker"])
    age = _gauge("worker_heartbeat_age_seconds", "Seconds since the worker's last heartbeat", ["worker"])
    lost = _gauge("worker_lost", "1: the worker's heartbeats stopped (WORKER_LOST_SECONDS)", ["worker"])
    gpu_total = _gauge("worker_gpu_memory_total_bytes", "A GPU's memory", ["worker", "gpu"])
    gpu_free = _gauge("worker_gpu_memory_free_bytes", "A GPU's free memory at the last heartbeat", ["worker", "gpu"])
    gpu_use = _gauge("worker_gpu_utilization_percent", "A GPU's utilisation at the last heartbeat", ["worker", "gpu"])
    for worker in workers:
        name = worker.name
        tasks.add_metric([name], running.get(name, 0))
        busy.add_metric([name], worker.in_flight)
        total.add_metric([name], worker.slots)
        age.add_metric([name], max((now - worker.last_heartbeat_at).total_seconds(), 0.0))
        lost.add_metric([name], 1 if worker.is_lost else 0)
        for gpu in _gpus(worker.device_info):
            index = str(gpu.get("index", ""))
            for family, key in ((gpu_total, "memory_total"), (gpu_free, "memory_free"), (gpu_use, "utilization")):
                if isinstance(gpu.get(key), (int, float)):
                    family.add_metric([name, index], gpu[key])
    yield from (tasks, busy, total, age, lost, gpu_total, gpu_free, gpu_use)


def _gpus(device_info: Any) -> list[dict[str, Any]]:
    """The GPUs a heartbeat reported (device_info is the worker's own JSON: trust no shape)."""
    gpus = device_info.get("gpus") if isinstance(device_info, dict) else None
    return [gpu for gpu in gpus if isinstance(gpu, dict)] if isinstance(gpus, list) else []


def _budget_family(now: datetime) -> Metric:
    family = _gauge(
        "tenant_budget_used_ratio", "Tokens spent in the budget period / the plan's budget (budgeted tenants)",
        ["tenant"],
    )
    tenants = list(
        Tenant.objects.filter(plan__budget_tokens__isnull=False)
        .select_related("plan")
        .only("slug", "plan__budget_tokens", "plan__budget_period")
        .order_by("slug")
    )
    # One read per budget period in use (a handful), not one per tenant.
    spent: dict[Any, int] = {}
    for period in {tenant.plan.budget_period for tenant in tenants}:
        start, _ = period_bounds(period, now)
        ledgers = BudgetLedger.objects.filter(
            period=period, period_start=start, tenant__in=[t for t in tenants if t.plan.budget_period == period]
        )
        spent.update(ledgers.values_list("tenant_id", "spent_tokens"))
    for tenant in tenants:
        budget = tenant.plan.budget_tokens or 0
        used = spent.get(tenant.pk, 0)
        family.add_metric([tenant.slug], used / budget if budget else (1.0 if used else 0.0))
    return family
