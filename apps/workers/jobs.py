"""The Huey job that runs on workers. The message carries the task id only.

Not bound to one Huey instance: apps.scheduler.queues registers it on each
model's queue under the same name. ``close_db`` gives each run fresh
database connections, as djhuey's ``db_task`` would.
"""

import uuid

from huey.contrib.djhuey import close_db

from apps.workers.execution import execute_task


@close_db
def run_task(task_id: str) -> None:
    execute_task(uuid.UUID(task_id))
