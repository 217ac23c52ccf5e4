"""Periodic Huey jobs of the scheduler (thin: they call service functions).

The lease reaper is not one: it runs in the scheduler's loop every few seconds
(apps.scheduler.reaper), where a crontab's minute would delay failover."""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from apps.scheduler import admission, dispatch, placer
from apps.tasks import retention


@db_periodic_task(crontab(minute="*"))
def fail_unplaceable_tasks() -> None:
    placer.fail_unplaceable()


@db_periodic_task(crontab(minute="*"))
def redispatch_stale_tasks() -> None:
    dispatch.redispatch_stale()


@db_periodic_task(crontab(minute="*"))
def settle_forgotten_charges() -> None:
    admission.settle_forgotten()


@db_periodic_task(crontab(minute="*"))
def place_models() -> None:
    # Catches up on what no event triggers: a worker gone lost, a rollover's old
    # version whose last task ended (its GPU memory is free again).
    placer.apply_placement()


@db_periodic_task(crontab(minute="17", hour="3"))
def purge_expired_outputs() -> None:
    retention.purge_expired_outputs()
