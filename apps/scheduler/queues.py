"""One Huey queue per model, so a task reaches only the workers hosting its model.

A model with versions has one queue per version, named by its spec
``{model}@{version}`` (a task's version is fixed at submission), so a version
reaches only the workers it is placed on; a task without a version uses the
model's own queue. Below, "model name" means such a spec.

Each queue is a Huey instance named ``{HUEY_NAME}.model.{model}`` with the
same kind of storage as ``settings.HUEY``: SqliteHuey on the same SQLite file
(its rows are keyed by queue name) or PriorityRedisHuey on the same Redis
connection pool. ``settings.HUEY`` itself keeps only the periodic scheduler
jobs. Queues are created on first use and cached for the process; the
``run_task`` job below is registered on each under the same name, so a message
names the same job whichever queue carries it.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection
from huey import Huey
from huey.api import TaskWrapper
from huey.storage import RedisStorage

from apps.core.hooks import Port


@dataclass(frozen=True)
class ModelQueue:
    model_name: str
    huey: Huey
    run_task: TaskWrapper

    def enqueue(self, task_id: uuid.UUID, priority: int) -> None:
        self.run_task(str(task_id), priority=priority)

    def task_ids(self) -> set[str]:
        """The ids of the tasks whose messages wait on this queue now (the whole
        queue is read: the dispatcher keeps it as short as the free slots)."""
        return {str(message.args[0]) for message in self.huey.pending() if message.args}


_queues: dict[str, ModelQueue] = {}
_queues_lock = threading.Lock()


def queue_spec(model_name: str, version: str | None) -> str:
    """The queue of a task of ``model_name`` at ``version`` (None: no version)."""
    return f"{model_name}@{version}" if version else model_name


def queue_name(model_name: str) -> str:
    return f"{settings.HUEY_NAME}.model.{model_name}"


def model_queue(model_name: str) -> ModelQueue:
    """This process's queue for ``model_name`` (created on first use)."""
    with _queues_lock:
        queue = _queues.get(model_name)
        if queue is None:
            queue = _queues[model_name] = _create(model_name)
        return queue


def created_queues() -> list[ModelQueue]:
    """The queues this process has used so far (for tests that leave the storage clean)."""
    with _queues_lock:
        return list(_queues.values())


# Running a task is the worker runtime's (apps.runtime, above this app): it
# registers its executor here at start-up.
task_executor: Port[[uuid.UUID], None] = Port("task executor")


def run_task(task_id: str) -> None:
    """The Huey job on every model's queue; the message carries the task id only."""
    # Connections as a request gets them (not djhuey's close_db, which closes
    # them after every run): a broken or expired one is replaced, a pooled one
    # goes back to the pool (PostgreSQL), and SQLite's, kept (CONN_MAX_AGE None),
    # is not reopened for every task (a new one registers ~30 SQL functions).
    _recycle_connections()
    try:
        task_executor(uuid.UUID(task_id))
    finally:
        _recycle_connections()


def _recycle_connections() -> None:
    # Not inside a transaction (a job run in-process, in a test's or a shell's):
    # Django closes a connection whose autocommit differs from its settings.
    if not connection.in_atomic_block:
        close_old_connections()


def _create(model_name: str) -> ModelQueue:
    base = settings.HUEY
    storage_kwargs = dict(base.storage_kwargs)
    if isinstance(base.storage, RedisStorage):
        storage_kwargs = {
            # One connection pool for every queue of the process, not one per model.
            "connection_pool": base.storage.pool,
            # Huey strips everything but [A-Za-z0-9_] from Redis key names by
            # default, which would put "tiny-1" and "tiny1" on one queue.
            "clean_name": False,
            # A worker looks at several queues in turn when the dispatcher wakes
            # it (apps.scheduler.wakeup); a blocking pop would sit on an empty
            # one while another has work.
            "blocking": False,
        }
    huey = type(base)(queue_name(model_name), results=False, utc=base.utc, **storage_kwargs)
    return ModelQueue(model_name=model_name, huey=huey, run_task=huey.task()(run_task))
