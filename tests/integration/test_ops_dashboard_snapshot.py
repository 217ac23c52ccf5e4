"""The operations dashboard's snapshot (/ops/snapshot.json) gives exact figures for known traffic.

Tasks are submitted over the API and run through the worker's own code
(``execute_task``); their times are then set to known values so every figure
can be stated exactly: queue depth and oldest wait, tasks and tokens per
minute, time to first token p50/p99, workers' slots and GPUs with a lost one
flagged, tenants' use of their limits with the one near a limit flagged, and
the latest failure with its reason. Nothing a tenant wrote or a model
generated appears, and nothing is decrypted to build it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.security.crypto import TenantCipher
from apps.tasks.models import Task, TaskState
from apps.tenants.services import change_tenant_plan, create_tenant, pause_tenant
from apps.workers.models import Worker
from apps.workers.services import heartbeat, register_worker

pytestmark = pytest.mark.django_db

SNAPSHOT = "/ops/snapshot.json"
SECRET_PROMPT = "pelican-quartz acquisition memo"
GIB = 2**30
GPU = {"index": 0, "name": "H100", "memory_total": 80 * GIB, "memory_free": 30 * GIB, "utilization": 75}
TTFT_SECONDS = (1, 2, 10)  # the three finished echo tasks' times to first token


def _submit(api, model: str, prompt: str = SECRET_PROMPT) -> Task:
    created = api.post("/api/v1/tasks", {"model": model, "prompt": prompt, "max_tokens": 32})
    assert created.status == 201, created.body
    return Task.objects.get(pk=created.body["id"])


def _run(task: Task) -> Task:
    execute_task(uuid.UUID(str(task.pk)))
    task.refresh_from_db()
    return task


@pytest.fixture
def traffic(acme, globex, acme_api, globex_api):
    """Known work on the platform; returns what the figures must be computed from."""
    now = timezone.now()
    change_tenant_plan(acme, {"max_queued": 5})
    LLMModel.objects.create(name="ops-broken", adapter="echo", adapter_config={"words_per_second": -1},
                            is_public=True)

    # Three echo tasks run to the end by the worker's code, then given known times.
    finished_at = now - timedelta(minutes=10)
    done = [_run(_submit(acme_api, "echo")) for _ in TTFT_SECONDS]
    for task, ttft in zip(done, TTFT_SECONDS, strict=True):
        assert task.state == TaskState.SUCCEEDED and task.first_token_at is not None  # recorded by the worker
        queued_at = finished_at - timedelta(seconds=30)
        Task.objects.filter(pk=task.pk).update(
            queued_at=queued_at, first_token_at=queued_at + timedelta(seconds=ttft), finished_at=finished_at
        )
    # One fails in the worker: its model cannot be loaded.
    failed = _run(_submit(acme_api, "ops-broken"))
    assert failed.state == TaskState.FAILED

    # Waiting work: four of acme's (its cap is five: 80%), one of globex's queued and one running.
    queued = [_submit(acme_api, "echo") for _ in range(4)]
    Task.objects.filter(pk=queued[0].pk).update(queued_at=now - timedelta(minutes=5))
    _submit(globex_api, "echo")
    running = _submit(globex_api, "echo")
    Task.objects.filter(pk=running.pk).update(state=TaskState.RUNNING, started_at=now)

    gpu_worker = register_worker(name="ops-gpu", host="gpu-host", pid=11, slots=4,
                                 device_info={"gpus": [GPU]}, model_names=["echo"])
    heartbeat(gpu_worker.pk, in_flight=3, idle=False, device_info={"gpus": [GPU]})
    register_worker(name="ops-gone", host="old-host", pid=12, slots=2, device_info={}, model_names=["echo"])
    Worker.objects.filter(name="ops-gone").update(
        last_heartbeat_at=now - timedelta(seconds=settings.WORKER_LOST_SECONDS + 60)
    )
    return {
        "finished_at": finished_at,
        "echo_tokens": sum(task.completion_tokens for task in done),
        "failed": Task.objects.get(pk=failed.pk),
    }


@pytest.fixture
def no_decryption(monkeypatch):
    """Building the dashboard must never decrypt a tenant's data."""

    def refuse(self, token):
        raise AssertionError("the dashboard decrypted a tenant's data")

    monkeypatch.setattr(TenantCipher, "decrypt_json", refuse)


@pytest.fixture
def snapshot(traffic, staff_client, no_decryption) -> dict:
    response = staff_client.get(SNAPSHOT)
    assert response.status_code == 200
    return response.json()


def _by(rows: list[dict], key: str, value: str) -> dict:
    matches = [row for row in rows if row[key] == value]
    assert len(matches) == 1, (value, rows)
    return matches[0]


def test_each_models_queue_throughput_and_time_to_first_token(snapshot, traffic):
    echo = _by(snapshot["models"], "name", "echo")
    assert (echo["queued"], echo["running"]) == (5, 1)
    assert echo["oldest_wait_seconds"] >= 300  # the oldest queued task was queued 5 minutes ago
    assert (echo["finished_last_hour"], echo["failed_last_hour"]) == (3, 0)
    assert traffic["echo_tokens"] > 0
    assert echo["completion_tokens_last_hour"] == traffic["echo_tokens"]
    assert echo["tokens_per_second"] == round(traffic["echo_tokens"] / 3600, 3)
    # Nearest rank over 1, 2 and 10 s: the 2nd (ceil(0.5 x 3)) and the 3rd (ceil(0.99 x 3)).
    assert (echo["ttft_p50_seconds"], echo["ttft_p99_seconds"]) == (2.0, 10.0)

    broken = _by(snapshot["models"], "name", "ops-broken")
    assert (broken["queued"], broken["running"], broken["oldest_wait_seconds"]) == (0, 0, None)
    assert (broken["finished_last_hour"], broken["failed_last_hour"]) == (1, 1)
    assert (broken["ttft_p50_seconds"], broken["ttft_p99_seconds"]) == (None, None)  # it never produced a token


def test_per_minute_buckets_hold_the_tasks_and_tokens_of_their_minute(snapshot, traffic):
    minutes = snapshot["throughput"]["minutes"]
    assert len(minutes) == 60
    minute = traffic["finished_at"].replace(second=0, microsecond=0).isoformat().replace("+00:00", "Z")
    i = minutes.index(minute)

    echo = _by(snapshot["throughput"]["series"], "model", "echo")
    assert echo["tasks"][i] == 3 and sum(echo["tasks"]) == 3
    assert echo["tokens_per_second"][i] == round(traffic["echo_tokens"] / 60, 3)
    assert sum(1 for value in echo["tokens_per_second"] if value) == 1
    broken = _by(snapshot["throughput"]["series"], "model", "ops-broken")
    assert sum(broken["tasks"]) == 1 and not any(broken["tokens_per_second"])


def test_workers_show_slots_models_and_gpus_and_a_lost_worker_is_flagged(snapshot):
    gone, gpu = snapshot["workers"]  # lost ones first
    assert (gone["name"], gone["lost"], gone["status"]) == ("ops-gone", True, "lost")
    assert gone["heartbeat_age_seconds"] >= settings.WORKER_LOST_SECONDS + 60

    assert (gpu["name"], gpu["lost"], gpu["status"]) == ("ops-gpu", False, "active")
    assert (gpu["busy"], gpu["slots"], gpu["models"]) == (3, 4, ["echo"])
    assert gpu["gpus"] == [
        {"index": 0, "name": "H100", "memory_total": 80 * GIB, "memory_used": 50 * GIB, "utilization": 75.0}
    ]


def test_tenants_show_their_limits_and_the_one_near_a_limit_is_flagged(snapshot):
    acme = _by(snapshot["tenants"], "slug", "acme")
    globex = _by(snapshot["tenants"], "slug", "globex")
    assert snapshot["tenants"][0]["slug"] == "acme"  # nearest its limits first

    acme_limits = {limit["name"]: limit for limit in acme["limits"]}
    assert acme_limits["queued"] == {"name": "queued", "used": 4, "limit": 5, "fraction": 0.8}
    assert acme_limits["running"]["used"] == 0
    assert acme_limits["requests/min"]["used"] == 8  # the tasks it submitted (within the last minute)
    assert (acme["near_limit"], acme["highest_fraction"], acme["paused"]) == (True, 0.8, False)

    globex_limits = {limit["name"]: limit for limit in globex["limits"]}
    assert (globex_limits["queued"]["used"], globex_limits["running"]["used"]) == (1, 1)
    assert globex["near_limit"] is False
    assert snapshot["tenants_total"] == 2


def test_a_paused_tenant_is_listed_and_marked_even_without_usage(acme, staff_client):
    quiet = create_tenant("Initech", "initech")
    pause_tenant(quiet)

    tenants = staff_client.get(SNAPSHOT).json()["tenants"]

    assert [(t["slug"], t["paused"], t["near_limit"]) for t in tenants] == [("initech", True, False)]


def test_recent_failures_give_the_reason_but_never_the_prompt(snapshot, traffic):
    failed = traffic["failed"]
    assert snapshot["failures"] == [{
        "task_id": str(failed.pk),
        "finished_at": failed.finished_at.isoformat().replace("+00:00", "Z"),
        "tenant": "acme",
        "model": "ops-broken",
        "error_code": "model_unavailable",
        "error_message": failed.error_message,
    }]
    assert failed.error_message  # a reason the operator can read


def test_neither_the_page_nor_the_snapshot_carries_what_tenants_wrote(traffic, staff_client, no_decryption):
    # The echo model's output is its prompt: neither may appear anywhere.
    for path in ("/ops/", SNAPSHOT):
        response = staff_client.get(path)
        assert response.status_code == 200
        assert SECRET_PROMPT.encode() not in response.content
        assert b"pelican" not in response.content
