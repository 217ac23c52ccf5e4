"""A task taken back from a dead worker (its lease lapsed, or the worker restarted under
its name) runs again, and its stream says so: the client sees
``{"type": "restart", "attempt": 2}`` before the new attempt's chunks, then ``done``.

The first attempt is the worker's own calls (register, claim, publisher) on a worker
that then dies; the second is the worker's code path (execute_task). The stream is
read through the real ASGI application."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from apps.runtime.execution import execute_task
from apps.streaming.services import open_publisher
from apps.tasks import services
from apps.workers import inventory
from apps.workers import services as worker_services
from tests.integration.stream_support import chunks, read_to_end

# The consumer reads the database from other threads: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PROMPT = "the new attempt streams all of these words"


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _start_worker(pid: int) -> None:
    worker_services.register_worker(
        name="w1", host="gpu-host-1", pid=pid, slots=2, device_info=inventory.device_info(), model_names=None
    )


def _lease_lapses(task_id: uuid.UUID, expires) -> None:
    requeued, _ = services.reap_expired_leases(now=expires + timedelta(seconds=1))
    assert [t.pk for t in requeued] == [task_id]


def _worker_restarts(task_id: uuid.UUID, expires) -> None:
    _start_worker(os.getpid())  # the same name, a new process: no waiting for the lease


@pytest.mark.parametrize("taken_back", [_lease_lapses, _worker_restarts], ids=["lease-lapsed", "worker-restarted"])
def test_the_stream_shows_the_restart_then_the_new_attempt(acme_api, acme_key, taken_back):
    _start_worker(_dead_pid())
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": PROMPT})
    assert created.status == 201, created.body
    task_id = uuid.UUID(created.body["id"])
    first = services.claim_task(task_id, "w1")
    assert first is not None
    publisher = open_publisher(first)
    publisher.add("cut short ")
    publisher.close()

    taken_back(task_id, first.lease_expires_at)
    execute_task(task_id)

    messages = read_to_end(task_id, key=acme_key)
    kinds = [message["type"] for message in messages]
    restart_at = kinds.index("restart")
    assert messages[restart_at] == {"type": "restart", "attempt": 2}
    assert "".join(chunk["text"] for chunk in chunks(messages[:restart_at])) == "cut short "
    assert "".join(chunk["text"] for chunk in chunks(messages[restart_at:])) == PROMPT
    assert messages[-1]["type"] == "done" and messages[-1]["status"] == "succeeded"
