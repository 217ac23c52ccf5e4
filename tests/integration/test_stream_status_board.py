"""Waiting streams share one read of their tasks' state and wait (apps.streaming.status)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from apps.scheduler.estimates import task_wait
from apps.streaming.status import StatusBoard
from apps.tasks import services
from apps.tasks.models import Task, TaskState
from apps.workers.services import register_worker

# The board reads from a worker thread: the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _queued(api, count: int, priority: str = "normal") -> list[uuid.UUID]:
    ids = []
    for n in range(count):
        created = api.post("/api/v1/tasks", {"model": "echo", "prompt": f"wait {n}", "priority": priority})
        assert created.status == 201, created.body
        ids.append(uuid.UUID(created.body["id"]))
    return ids


def test_many_streams_asking_at_once_share_one_read_and_get_each_tasks_own_wait(acme_api):
    register_worker(name="w-board", host="h", pid=1, slots=2, device_info={}, model_names=["echo"])
    normal = _queued(acme_api, 8)
    urgent = _queued(acme_api, 2, priority="interactive")
    board = StatusBoard(max_age=60)

    async def ask_all():
        return await asyncio.gather(*(board.current(task_id) for task_id in normal + urgent))

    answers = asyncio.run(ask_all())

    assert board.refreshes == 1
    expected = [(TaskState.QUEUED, task_wait(Task.objects.select_related("model").get(pk=t))) for t in normal + urgent]
    assert answers == expected
    positions = [wait["queue_position"] for _, wait in answers]
    assert positions == [3, 4, 5, 6, 7, 8, 9, 10, 1, 2]  # the interactive ones first


def test_a_few_waiting_streams_get_the_same_waits_counted_one_by_one(acme_api):
    register_worker(name="w-board", host="h", pid=1, slots=1, device_info={}, model_names=["echo"])
    ids = _queued(acme_api, 12)
    asked = [ids[0], ids[5], ids[11]]  # fewer than estimates.FEW_ASKED: no read of the whole queue
    board = StatusBoard(max_age=60)

    async def ask():
        return await asyncio.gather(*(board.current(task_id) for task_id in asked))

    answers = asyncio.run(ask())

    assert [wait["queue_position"] for _, wait in answers] == [1, 6, 12]
    assert answers == [(TaskState.QUEUED, task_wait(Task.objects.select_related("model").get(pk=t))) for t in asked]


def test_an_answer_follows_the_task_once_the_snapshot_is_old(acme_api):
    (task_id,) = _queued(acme_api, 1)
    board = StatusBoard(max_age=0.0)

    async def ask():
        return await board.current(task_id)

    assert asyncio.run(ask())[0] == TaskState.QUEUED
    services.cancel_task(Task.objects.get(pk=task_id))
    assert asyncio.run(ask()) == (TaskState.CANCELLED, {"queue_position": None, "estimated_start_seconds": None})
    assert board.refreshes == 2


def test_a_task_that_does_not_exist_reads_as_cancelled():
    board = StatusBoard()
    state, wait = asyncio.run(board.current(uuid.uuid4()))
    assert state == TaskState.CANCELLED and wait["queue_position"] is None
