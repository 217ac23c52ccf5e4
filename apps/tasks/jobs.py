"""Periodic Huey jobs of the tasks app (thin: they call services)."""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from apps.tasks import dependencies


@db_periodic_task(crontab(minute="*"))
def settle_stranded_waiting_tasks() -> None:
    """Waiting tasks whose parents' end hooks were lost with a crashed process."""
    dependencies.settle_stranded()
