"""A worker that restarts under its name (a crash under the supervisor, a SIGKILL and
a restart) gives back its predecessor's tasks at once: they are queued again for their
next attempt without waiting for their leases to lapse; on their last attempt they fail
``worker_lost``, saying the worker restarted. Other workers' tasks are not touched.

Time never passes here: the leases are all still valid when the restart comes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from apps.tasks import services as task_services
from apps.tasks.models import Task, TaskState
from apps.workers import inventory, services
from apps.workers.models import Worker

pytestmark = pytest.mark.django_db


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): a killed worker's."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _start_worker(name: str, pid: int) -> Worker:
    """What run_worker does first (apps.runtime.runner.WorkerRunner.start)."""
    return services.register_worker(
        name=name, host="gpu-host-1", pid=pid, slots=4, device_info=inventory.device_info(), model_names=None
    )


def _running_on(api, worker: Worker, prompt: str) -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    task = task_services.claim_task(created.body["id"], worker.name)
    assert task is not None and task.lease_expires_at is not None
    return task


def test_a_restarted_worker_requeues_its_predecessors_tasks_at_once(acme_api, dispatcher, model_queues):
    huey = model_queues("echo").huey
    crashed = _start_worker("w1", _dead_pid())
    other = _start_worker("w2", os.getpid())
    first, second = _running_on(acme_api, crashed, "first"), _running_on(acme_api, crashed, "second")
    elsewhere = _running_on(acme_api, other, "elsewhere")
    untouched = Task.objects.filter(pk=elsewhere.pk).values().get()

    _start_worker("w1", os.getpid())  # the same name again, a new process

    for task in (first, second):
        task.refresh_from_db()
        assert (task.state, task.attempt, task.worker_name, task.lease_expires_at) == (TaskState.QUEUED, 1, "", None)
        assert (task.error_code, task.error_message) == ("retrying", task_services.WORKER_RESTARTED)
    assert Task.objects.filter(pk=elsewhere.pk).values().get() == untouched
    # Ready for the dispatcher now, and the next claim is the next attempt.
    assert dispatcher.run_once() == 2
    assert sorted(message.args[0] for message in huey.pending()) == sorted([str(first.pk), str(second.pk)])
    assert task_services.claim_task(first.pk, "w1").attempt == 2


def test_on_the_last_attempt_the_task_fails_as_worker_lost(acme_api, settings):
    settings.TASK_MAX_ATTEMPTS = 2
    worker = _start_worker("w1", _dead_pid())
    task = _running_on(acme_api, worker, "dies twice")
    _start_worker("w1", _dead_pid())  # attempt 1 died with it
    assert task_services.claim_task(task.pk, "w1").attempt == 2

    _start_worker("w1", os.getpid())  # and attempt 2 too

    task.refresh_from_db()
    assert (task.state, task.attempt, task.error_code) == (TaskState.FAILED, 2, "worker_lost")
    assert task.error_message == "attempt 2 of 2 failed, the last allowed: the worker restarted"
    assert task.finished_at is not None and task.lease_expires_at is None


def test_a_first_start_or_a_clean_stop_leaves_nothing_to_release(acme_api):
    worker = _start_worker("w1", os.getpid())
    services.mark_stopped(worker.id)
    assert Task.objects.count() == 0
    queued = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "waiting"}).body["id"]

    _start_worker("w1", os.getpid())

    assert Task.objects.filter(pk=queued).values_list("state", "attempt").get() == (TaskState.QUEUED, 0)
