"""GET /metrics's gauges are read from the database at the scrape: queues, workers, budgets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.catalog.models import LLMModel
from apps.tasks import services
from apps.tasks.models import Task
from apps.tenants.services import change_tenant_plan
from apps.workers.models import Worker
from apps.workers.services import heartbeat, mark_stopped, register_worker
from tests.integration.graph_support import run, submit_task
from tests.metrics_support import scrape

pytestmark = pytest.mark.django_db

GPU = {"index": 0, "name": "test gpu", "memory_total": 80_000, "memory_free": 30_000, "utilization": 55}


def test_queue_gauges_per_model(acme_api, staff_client, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    waiting = [submit_task(acme_api, capture, prompt=f"task {n}")["id"] for n in range(3)]
    Task.objects.filter(pk=waiting[0]).update(queued_at=timezone.now() - timedelta(minutes=10))
    register_worker(name="gauge-worker", host="h", pid=100, slots=2, device_info={})
    services.claim_task(waiting[2], "gauge-worker")
    LLMModel.objects.create(name="idle-model", adapter="echo", is_public=True)

    seen = scrape(staff_client)

    assert seen.value("llmagentos_queue_depth", model="echo") == 2
    assert seen.value("llmagentos_tasks_in_state", model="echo", state="queued") == 2
    assert seen.value("llmagentos_tasks_in_state", model="echo", state="running") == 1
    assert seen.value("llmagentos_queue_oldest_wait_seconds", model="echo") >= 600
    assert seen.value("llmagentos_worker_running_tasks", worker="gauge-worker") == 1
    # An idle enabled model is shown with its zeros, not missing.
    assert seen.samples["llmagentos_queue_depth", frozenset({("model", "idle-model")})] == 0
    assert seen.samples["llmagentos_queue_oldest_wait_seconds", frozenset({("model", "idle-model")})] == 0


def test_worker_gauges_from_registrations_and_heartbeats(staff_client):
    alive = register_worker(name="alive", host="h1", pid=101, slots=4, device_info={})
    heartbeat(alive.pk, in_flight=3, idle=False, device_info={"gpus": [GPU]})
    lost = register_worker(name="lost", host="h2", pid=102, slots=2, device_info={})
    Worker.objects.filter(pk=lost.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(seconds=settings.WORKER_LOST_SECONDS + 60)
    )
    stopped = register_worker(name="stopped", host="h3", pid=103, slots=8, device_info={})
    mark_stopped(stopped.pk)

    seen = scrape(staff_client)

    assert seen.value("llmagentos_worker_slots_total", worker="alive") == 4
    assert seen.value("llmagentos_worker_slots_busy", worker="alive") == 3
    assert seen.value("llmagentos_worker_lost", worker="alive") == 0
    assert seen.value("llmagentos_worker_lost", worker="lost") == 1
    assert seen.value("llmagentos_worker_heartbeat_age_seconds", worker="lost") > settings.WORKER_LOST_SECONDS
    assert seen.value("llmagentos_worker_slots_total", worker="lost") == 2
    assert seen.value("llmagentos_worker_gpu_memory_total_bytes", worker="alive", gpu="0") == 80_000
    assert seen.value("llmagentos_worker_gpu_memory_free_bytes", worker="alive", gpu="0") == 30_000
    assert seen.value("llmagentos_worker_gpu_utilization_percent", worker="alive", gpu="0") == 55
    # A stopped worker is no longer part of the fleet.
    assert not any(dict(labels).get("worker") == "stopped" for _, labels in seen.samples)


def test_budget_used_ratio_per_budgeted_tenant(acme, globex, acme_api, staff_client,
                                               django_capture_on_commit_callbacks):
    change_tenant_plan(acme, {"budget_tokens": 200})
    capture = django_capture_on_commit_callbacks
    task = run(submit_task(acme_api, capture, prompt="the quick brown fox", max_tokens=8)["id"], capture)

    seen = scrape(staff_client)

    assert seen.value("llmagentos_tenant_budget_used_ratio", tenant="acme") == pytest.approx(
        (task.prompt_tokens + task.completion_tokens) / 200
    )
    # globex has no budget: no ratio to show.
    assert ("llmagentos_tenant_budget_used_ratio", frozenset({("tenant", "globex")})) not in seen.samples
