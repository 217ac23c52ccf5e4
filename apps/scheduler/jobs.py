"""Periodic Huey jobs of the scheduler (thin: they call dispatch functions)."""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from apps.scheduler import dispatch


@db_periodic_task(crontab(minute="*"))
def reap_expired_leases() -> None:
    dispatch.reap_and_requeue()


@db_periodic_task(crontab(minute="*"))
def redispatch_stale_tasks() -> None:
    dispatch.redispatch_stale()
