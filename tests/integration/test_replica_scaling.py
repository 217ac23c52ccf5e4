"""Replicas follow the queue: a GPU version gets a copy on another worker when its queue
stays long, and loses it when it has been idle for a while; short swings change nothing.

The placement run takes ``now``: the test drives the scaler's clock and never sleeps.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.catalog.models import ModelVersion
from apps.scheduler import placer
from apps.scheduler.autoscale import COOLDOWN_SECONDS, DOWN_AFTER_SECONDS, UP_AFTER_SECONDS
from apps.tasks.models import Task, TaskState
from apps.workers.models import ReplicaTarget, Worker
from tests.integration.test_model_placement import beat, devices, gpu_model, placements, register

pytestmark = pytest.mark.django_db

GPU = devices((48, 48))  # room for one copy of a 30 GiB model per worker
SLOTS = 2  # each registered worker's task slots (see register)


class Clock:
    """The scaler's time: runs the placement at explicit moments."""

    def __init__(self) -> None:
        self.start = self.now = timezone.now()

    def place_at(self, seconds: float) -> set[str]:
        """Run the placement ``seconds`` after the start; the workers holding llama@v1 then."""
        self.now = self.start + timedelta(seconds=seconds)
        placer.apply_placement(now=self.now)
        return {worker for spec, worker, _ in placements() if spec == "llama@v1"}


@pytest.fixture
def llama(tmp_path: Path) -> ModelVersion:
    version = gpu_model(tmp_path, "llama", 30)
    register("gpu-a", GPU)
    register("gpu-b", GPU)
    return version


def submit(api, count: int) -> list[str]:
    ids = []
    for i in range(count):
        created = api.post("/api/v1/tasks", {"model": "llama", "prompt": f"task {i}"})
        assert created.status == 201, created.body
        ids.append(created.body["id"])
    return ids


def set_state(ids: list[str], state: str) -> None:
    Task.objects.filter(pk__in=ids).update(state=state)


def target(version: ModelVersion) -> ReplicaTarget:
    return ReplicaTarget.objects.get(version=version)


def test_a_long_queue_adds_a_replica_and_an_idle_one_loses_it(llama, acme_api, caplog):
    clock = Clock()
    assert clock.place_at(0) == {"gpu-a"}  # an empty queue: the primary alone

    # 2 running and 4 queued on gpu-a's 2 slots: two rounds wait.
    tasks = submit(acme_api, 6)
    set_state(tasks[:2], TaskState.RUNNING)
    assert clock.place_at(1) == {"gpu-a"}
    assert clock.place_at(UP_AFTER_SECONDS - 1) == {"gpu-a"}  # long, not yet for long enough
    with caplog.at_level(logging.INFO, logger="apps.workers.services"):
        assert clock.place_at(UP_AFTER_SECONDS + 1) == {"gpu-a", "gpu-b"}
    assert "llama@v1: 1 → 2 replicas: 4 queued for 2 slots for 30 s" in caplog.messages
    assert beat(Worker.objects.get(name="gpu-b"), GPU) == ("echo", "llama@v1")  # b now pulls from it
    assert target(llama).desired == 2

    # Both workers take tasks: 4 running, 2 queued; not long for 4 slots, not idle.
    set_state(tasks[2:4], TaskState.RUNNING)
    for second in range(40, 400, 20):
        assert clock.place_at(second) == {"gpu-a", "gpu-b"}

    # A momentary dip: everything done, then new work arrives before the down delay.
    set_state(tasks, TaskState.SUCCEEDED)
    dip = 400
    assert clock.place_at(dip) == {"gpu-a", "gpu-b"}
    assert clock.place_at(dip + DOWN_AFTER_SECONDS - 10) == {"gpu-a", "gpu-b"}
    more = submit(acme_api, 3)
    set_state(more, TaskState.RUNNING)  # 3 running: more than half of one worker's 2 slots
    assert clock.place_at(dip + DOWN_AFTER_SECONDS - 5) == {"gpu-a", "gpu-b"}
    set_state(more, TaskState.SUCCEEDED)
    assert clock.place_at(dip + DOWN_AFTER_SECONDS + 10) == {"gpu-a", "gpu-b"}  # the idle timer restarted

    # Idle for the whole down delay: the replica goes, the primary stays.
    idle = dip + DOWN_AFTER_SECONDS + 10
    assert clock.place_at(idle + DOWN_AFTER_SECONDS - 1) == {"gpu-a", "gpu-b"}
    with caplog.at_level(logging.INFO, logger="apps.workers.services"):
        assert clock.place_at(idle + DOWN_AFTER_SECONDS) == {"gpu-a"}
    assert any(m.startswith("llama@v1: 2 → 1 replicas: nothing queued and 0 running") for m in caplog.messages)
    assert beat(Worker.objects.get(name="gpu-b"), GPU) == ("echo",)
    assert target(llama).desired == 1

    # Idle for ever after: never below the primary.
    assert clock.place_at(idle + 10 * DOWN_AFTER_SECONDS) == {"gpu-a"}
    assert target(llama).desired == 1


def test_a_wish_without_room_is_shown_and_met_when_a_worker_joins(llama, acme_api, staff_client, caplog):
    clock = Clock()
    tasks = submit(acme_api, 12)
    set_state(tasks[:2], TaskState.RUNNING)  # 10 queued: long for 2 slots and for 4
    clock.place_at(0)
    assert clock.place_at(UP_AFTER_SECONDS) == {"gpu-a", "gpu-b"}
    with caplog.at_level(logging.INFO, logger="apps.workers.services"):
        assert clock.place_at(UP_AFTER_SECONDS + max(UP_AFTER_SECONDS, COOLDOWN_SECONDS)) == {"gpu-a", "gpu-b"}
    assert "placement: llama@v1: wanted 3 replicas, room for 2" in caplog.messages

    listed = staff_client.get("/api/v1/ops/models").json()["data"]
    [version] = next(m for m in listed if m["name"] == "llama")["versions"]
    assert (version["desired_replicas"], version["replicas"]) == (3, 2)
    assert version["replica_change"]["reason"] == "10 queued for 4 slots for 60 s"
    changed_at = datetime.fromisoformat(version["replica_change"]["at"].replace("Z", "+00:00"))
    assert abs(changed_at - clock.now) < timedelta(milliseconds=1)

    # No third step while the second is unmet, however long the queue stays.
    assert clock.place_at(3600) == {"gpu-a", "gpu-b"}
    assert target(llama).desired == 3

    register("gpu-c", GPU)  # a worker with room: the wanted replica goes there at once
    assert {worker for spec, worker, _ in placements() if spec == "llama@v1"} == {"gpu-a", "gpu-b", "gpu-c"}
