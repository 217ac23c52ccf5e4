"""Workers register, heartbeat, confirm drains, stop, and show as lost when silent."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.catalog.models import LLMModel
from apps.workers import inventory, services
from apps.workers.models import LOST, Worker, WorkerState

pytestmark = pytest.mark.django_db

HOST = "gpu-host-1"


def _register(name: str = "w1", **overrides) -> Worker:
    arguments = {
        "name": name,
        "host": HOST,
        "pid": os.getpid(),
        "slots": 4,
        "device_info": inventory.device_info(),
        "model_names": None,
    }
    arguments.update(overrides)
    return services.register_worker(**arguments)


def _beat(worker: Worker, *, in_flight: int = 0, idle: bool = False) -> services.HeartbeatReply:
    return services.heartbeat(worker.id, in_flight=in_flight, idle=idle, device_info=inventory.device_info())


def _silent_for(worker: Worker, seconds: float) -> None:
    """Its last heartbeat was this long ago."""
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat_at=timezone.now() - timedelta(seconds=seconds))
    worker.refresh_from_db()


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def slow_echo(db) -> LLMModel:
    return LLMModel.objects.create(name="echo-slow", adapter="echo", adapter_config={"words_per_second": 5})


# --- Registration -----------------------------------------------------------------------------


def test_a_registered_worker_is_active_with_its_host_and_devices(slow_echo):
    worker = _register(slots=8)

    worker.refresh_from_db()
    assert (worker.name, worker.host, worker.pid, worker.slots) == ("w1", HOST, os.getpid(), 8)
    assert worker.state == WorkerState.ACTIVE and worker.status == WorkerState.ACTIVE
    assert not worker.is_lost
    assert worker.device_info["cpu_count"] == os.cpu_count()
    assert isinstance(worker.device_info["gpus"], list)
    assert set(worker.device_info) == {"gpus", "cpu_count", "ram_total", "ram_available"}


def test_without_a_model_list_a_worker_serves_every_enabled_model(slow_echo):
    LLMModel.objects.create(name="retired", adapter="echo", enabled=False)

    worker = _register()

    assert services.placed_model_names(worker) == ("echo", "echo-slow")
    assert worker.serves_all_models


def test_a_worker_can_be_placed_on_named_models_only(slow_echo):
    worker = _register(model_names=["echo-slow"])

    assert services.placed_model_names(worker) == ("echo-slow",)
    assert not worker.serves_all_models


def test_an_unknown_or_disabled_model_name_is_refused(slow_echo):
    LLMModel.objects.create(name="retired", adapter="echo", enabled=False)

    with pytest.raises(services.UnknownModels, match="nope, retired"):
        _register(model_names=["echo", "nope", "retired"])
    assert not Worker.objects.exists()


def test_a_name_held_by_a_live_worker_on_another_host_is_refused(db):
    _register("w1", host="host-a")

    with pytest.raises(services.WorkerNameInUse, match="host-a"):
        _register("w1", host="host-b")


def test_a_name_held_by_another_live_process_on_this_host_is_refused(db):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _register("w1", pid=other.pid)

        with pytest.raises(services.WorkerNameInUse, match=f"pid {other.pid}"):
            _register("w1")
    finally:
        other.kill()
        other.wait()


def test_a_restart_on_the_same_host_takes_over_from_its_dead_predecessor(db):
    first = _register("w1", pid=_dead_pid())

    again = _register("w1")

    assert again.pk == first.pk and again.pid == os.getpid()
    assert Worker.objects.count() == 1


def test_a_name_whose_worker_is_lost_or_stopped_can_be_taken_over(db):
    lost = _register("w-lost", host="host-a")
    _silent_for(lost, settings.WORKER_LOST_SECONDS + 1)
    stopped = _register("w-stopped", host="host-a")
    services.mark_stopped(stopped.id)

    assert _register("w-lost", host="host-b").host == "host-b"
    assert _register("w-stopped", host="host-b").state == WorkerState.ACTIVE


# --- Heartbeats, lost, stopped ----------------------------------------------------------------


def test_a_heartbeat_records_liveness_load_and_devices(db):
    worker = _register()
    _silent_for(worker, 10)
    before = worker.last_heartbeat_at

    reply = _beat(worker, in_flight=3)

    worker.refresh_from_db()
    assert worker.last_heartbeat_at > before
    assert worker.in_flight == 3
    assert reply == services.HeartbeatReply(state=WorkerState.ACTIVE, model_names=("echo",))


def test_a_worker_whose_heartbeats_stop_is_lost_until_it_beats_again(db):
    worker = _register()
    _silent_for(worker, settings.WORKER_LOST_SECONDS - 5)
    assert not worker.is_lost and list(Worker.objects.lost()) == []

    _silent_for(worker, settings.WORKER_LOST_SECONDS + 1)

    assert worker.is_lost and worker.status == LOST
    assert worker.state == WorkerState.ACTIVE  # lost is derived, never stored
    assert list(Worker.objects.lost()) == [worker] and list(Worker.objects.alive()) == []

    _beat(worker)
    worker.refresh_from_db()
    assert not worker.is_lost and list(Worker.objects.alive()) == [worker]


def test_a_stopped_worker_is_not_lost_however_old_its_last_heartbeat(db):
    worker = _register()

    services.mark_stopped(worker.id)
    _silent_for(worker, settings.WORKER_LOST_SECONDS * 10)

    assert worker.state == WorkerState.STOPPED and worker.stopped_at is not None
    assert not worker.is_lost and worker.status == WorkerState.STOPPED
    assert list(Worker.objects.lost()) == [] and list(Worker.objects.alive()) == []


def test_a_heartbeat_for_a_removed_worker_says_so(db):
    worker = _register()
    Worker.objects.filter(pk=worker.pk).delete()

    with pytest.raises(services.WorkerGone):
        _beat(worker)


def test_a_worker_serving_every_model_follows_the_catalog_at_each_heartbeat(db):
    pinned = _register("pinned", model_names=["echo"])
    follower = _register("follower")
    LLMModel.objects.create(name="new-model", adapter="echo")
    LLMModel.objects.filter(name="echo").update(enabled=False)

    assert _beat(follower).model_names == ("new-model",)
    assert _beat(pinned).model_names == ("echo",)


# --- Drain confirmation ---------------------------------------------------------------------


def test_a_drain_is_confirmed_only_when_the_worker_is_idle(db):
    worker = _register()

    assert services.drain(worker).state == WorkerState.DRAINING
    assert _beat(worker, in_flight=1, idle=False).state == WorkerState.DRAINING
    assert _beat(worker, in_flight=0, idle=True).state == WorkerState.DRAINED
    assert services.undrain(worker).state == WorkerState.ACTIVE
    assert _beat(worker, idle=True).state == WorkerState.ACTIVE


def test_a_drain_survives_a_crash_restart_but_not_a_clean_stop(db):
    worker = _register("w1", pid=_dead_pid())
    services.drain(worker)

    assert _register("w1").state == WorkerState.DRAINING

    services.mark_stopped(worker.id)
    assert _register("w1").state == WorkerState.ACTIVE


def test_workers_for_a_model_are_the_active_live_workers_placed_on_it(slow_echo):
    serving = _register("serving", model_names=["echo"])
    _register("other-model", model_names=["echo-slow"])
    services.drain(_register("draining", model_names=["echo"]))
    services.mark_stopped(_register("stopped", model_names=["echo"]).id)
    _silent_for(_register("lost", model_names=["echo"]), settings.WORKER_LOST_SECONDS + 1)

    echo = LLMModel.objects.get(name="echo")
    assert list(services.workers_for_model(echo)) == [serving]
