"""Huey jobs that run on workers. The message carries the task id only."""

import uuid

from huey.contrib.djhuey import db_task

from apps.workers.execution import execute_task


@db_task()
def run_task(task_id: str) -> None:
    execute_task(uuid.UUID(task_id))
