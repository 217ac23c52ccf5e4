"""Fencing: each write a worker makes for a task carries the attempt number it
claimed (the fencing token), and is refused once the task has moved on to a
newer attempt (re-queued after a lost lease, a worker restart) or has ended.

The task's end (apps.tasks.statements.finish), a retry's release and the lease
renewals are conditional UPDATEs on ``attempt``; the charge is settled only by
the end that was written (apps.tasks.lifecycle ``ending``); the stream log's
chunk writes check the attempt too (apps.streaming.log). A refused stream write
raises ``StaleAttempt``: the worker stops the attempt and drops its result.
"""

from __future__ import annotations

import uuid


class StaleAttempt(Exception):
    """A write of an attempt that no longer owns its task."""

    def __init__(self, task_id: uuid.UUID | str, attempt: int) -> None:
        super().__init__(f"attempt {attempt} of task {task_id} no longer owns it")
        self.task_id = task_id
        self.attempt = attempt
