"""A worker running one task in a thread of the test, with a lease keeper of its own,
so a test can ask for a suspension (apps.tasks.suspension) while it streams.

The echo model here streams 20 words a second: a request made after the first
chunks finds the generation mid-way. Tests using it need committed rows
(``pytest.mark.django_db(transaction=True, serialized_rollback=True)``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from django.db import connection

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.runtime.leases import LeaseKeeper
from apps.streaming.log import stream_log
from apps.tasks import services as task_services
from apps.tasks.models import Task, TaskState

# Bounds a failure only: a working suspension takes a word or two (50 ms each).
FAILURE_WAIT = 30.0
SLOW_ECHO = "echo-slow"
WORDS = " ".join(f"word{n}" for n in range(40))


def slow_echo() -> LLMModel:
    return LLMModel.objects.create(
        name=SLOW_ECHO, adapter="echo", adapter_config={"words_per_second": 20}, is_public=True
    )


class WorkerThread:
    """``execute_task`` of one task in a thread, as a worker's slot runs it, once the
    task is handed out as the dispatcher hands it (a suspended task resumes only so)."""

    def __init__(self, task_id: uuid.UUID | str, keeper: LeaseKeeper) -> None:
        task_services.claim_for_dispatch(uuid.UUID(str(task_id)))
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(uuid.UUID(str(task_id)), keeper))
        self._thread.start()

    def _run(self, task_id: uuid.UUID, keeper: LeaseKeeper) -> None:
        try:
            execute_task(task_id, keeper)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connection.close()

    def join(self) -> None:
        self._thread.join(FAILURE_WAIT)
        assert not self._thread.is_alive(), "the worker's slot never finished"
        assert not self.errors, self.errors


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + FAILURE_WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def streamed_some(task_id: uuid.UUID | str) -> Callable[[], bool]:
    """Whether the task runs and has streamed a few words (its stream log has chunks)."""
    def check() -> bool:
        return (
            Task.objects.filter(pk=task_id, state=TaskState.RUNNING).exists()
            and stream_log().last_seq(uuid.UUID(str(task_id))) >= 3
        )

    return check
