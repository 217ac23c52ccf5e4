"""Fencing: each write of an attempt carries its attempt number, and once the task has
moved on to a newer attempt (its worker was cut off, its lease lapsed, the reaper
requeued it, another worker claimed it), the old attempt's chunk, result and charge
are refused: nothing it sends reaches the stream, its result is dropped with a log
line, and the tenant's ledger holds only the new attempt's charge. On both stream
log back ends.

The old attempt writes through the worker's own calls (claim, the stream publisher,
finish); time is moved by the reaper's ``now`` argument."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest

from apps.streaming.events import CHUNK, RESTART
from apps.streaming.log import StreamLog
from apps.streaming.publisher import StreamPublisher
from apps.streaming.services import open_publisher
from apps.tasks import services
from apps.tasks.fencing import StaleAttempt
from apps.tasks.models import Task, TaskState
from apps.tenants.models import TaskCharge
from tests.integration.stream_support import on_stream_loop

# The stream log is read from another thread (as a server does): rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

USAGE = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def _overtaken(api) -> tuple[Task, StreamPublisher, Task]:
    """(the old attempt, its publisher, the new attempt): attempt 1 streamed a chunk,
    lost its lease, and attempt 2 began on another worker."""
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "fenced"})
    assert created.status == 201, created.body
    old = services.claim_task(uuid.UUID(created.body["id"]), "cut-off-worker")
    assert old is not None
    publisher = open_publisher(old)
    publisher.add("from attempt one ")
    publisher.close()  # written
    requeued, _ = services.reap_expired_leases(now=old.lease_expires_at + timedelta(seconds=1))
    assert [t.pk for t in requeued] == [old.pk]
    new = services.claim_task(old.pk, "healthy-worker")
    assert new is not None and new.attempt == 2
    return old, publisher, new


def _events(log: StreamLog, task_id: uuid.UUID) -> list[tuple[str, dict]]:
    cipher = Task.objects.select_related("tenant").get(pk=task_id).tenant.cipher
    return [(event.kind, cipher.decrypt_json(event.payload)) for _, event in on_stream_loop(log.read_all(task_id))]


def test_a_stale_attempts_chunks_are_refused(acme_api, stream_log_backend):
    old, late, new = _overtaken(acme_api)
    fresh = open_publisher(new)  # attempt 2 begins: its restart event, and the fence
    fresh.add("from attempt two")
    fresh.close()

    with pytest.raises(StaleAttempt):
        late.add("late words from attempt one")
        late.close()  # (the database log refuses at once, Redis's writer thread soon: both surface here)

    assert _events(stream_log_backend, old.pk) == [
        (CHUNK, {"text": "from attempt one "}), (RESTART, {"attempt": 2}), (CHUNK, {"text": "from attempt two"}),
    ]


def test_a_stale_attempts_result_is_dropped_and_never_charged(acme_api, acme, stream_log_backend, caplog):
    old, _, new = _overtaken(acme_api)
    charge_before = TaskCharge.objects.filter(task_id=old.pk).values().get()

    with caplog.at_level(logging.WARNING, logger="apps.tasks.services"):
        recorded = services.finish_task(old, state=TaskState.SUCCEEDED, output="late result", usage=USAGE)

    assert recorded is False
    assert "attempt 1 of task" in caplog.text and "result is dropped" in caplog.text
    assert TaskCharge.objects.filter(task_id=old.pk).values().get() == charge_before  # the ledger is unchanged
    assert not services.release_for_retry(old, "late failure")
    task = Task.objects.get(pk=old.pk)
    assert (task.state, task.attempt, task.output_ciphertext) == (TaskState.RUNNING, 2, None)

    # The current attempt's end is recorded and charged, once.
    assert services.finish_task(new, state=TaskState.SUCCEEDED, output="the result", usage=USAGE)
    charge = TaskCharge.objects.get(task_id=old.pk)
    assert charge.settled_at is not None
    assert (charge.prompt_tokens, charge.completion_tokens) == (4, 2)
    assert services.finish_task(old, state=TaskState.SUCCEEDED, output="later still", usage=USAGE) is False
    assert TaskCharge.objects.get(task_id=old.pk).settled_at == charge.settled_at
