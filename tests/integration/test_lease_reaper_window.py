"""A dead worker's task is queued again within seconds: its lease runs TASK_LEASE_SECONDS
from the worker's last renewal, the scheduler's reaper looks every
TASK_LEASE_RENEW_SECONDS, and it reaps the moment the lease has passed — never before.

Time is driven by explicit arguments (the reaper's ``now``, the scheduler reaper's
clock), never by sleeping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.runtime.leases import LeaseKeeper
from apps.scheduler.reaper import LeaseReaper
from apps.tasks import services
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db

TICK = timedelta(milliseconds=1)


def _running(api, worker: str = "worker-1") -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "reap me in time"})
    assert created.status == 201, created.body
    task = services.claim_task(created.body["id"], worker)
    assert task is not None
    return task


def test_the_lease_runs_the_configured_length_from_the_last_renewal(acme_api, settings):
    settings.TASK_LEASE_SECONDS = 7
    before = timezone.now()
    task = _running(acme_api)
    assert before + timedelta(seconds=7) <= task.lease_expires_at <= timezone.now() + timedelta(seconds=7)

    keeper = LeaseKeeper()  # the worker's own renewal
    keeper.hold(task)
    renewed_at = timezone.now()
    keeper.renew_once()

    task.refresh_from_db()
    assert renewed_at + timedelta(seconds=7) <= task.lease_expires_at <= timezone.now() + timedelta(seconds=7)


def test_the_task_is_requeued_as_soon_as_its_lease_has_passed_and_not_before(acme_api):
    task = _running(acme_api)
    expires = task.lease_expires_at

    assert services.reap_expired_leases(now=expires - TICK) == ([], 0)
    assert services.reap_expired_leases(now=expires) == ([], 0)
    task.refresh_from_db()
    assert task.state == TaskState.RUNNING

    requeued, failed = services.reap_expired_leases(now=expires + TICK)

    assert [t.pk for t in requeued] == [task.pk] and failed == 0
    task.refresh_from_db()
    assert (task.state, task.error_code, task.error_message) == (
        TaskState.QUEUED, "retrying", services.LEASE_EXPIRED
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_schedulers_reaper_rounds_follow_the_settings(acme_api, settings):
    settings.TASK_LEASE_SECONDS, settings.TASK_LEASE_RENEW_SECONDS = 4, 2.0
    clock = Clock()
    reaper = LeaseReaper(clock)
    dead = _running(acme_api, "dead-worker")
    Task.objects.filter(pk=dead.pk).update(lease_expires_at=timezone.now() - TICK)

    # Just started (or the database just came back): the live workers renew first,
    # for one lease length; then every round reaps.
    assert reaper.run_if_due() == 0
    clock.now += 2.0
    assert reaper.run_if_due() == 0
    assert Task.objects.get(pk=dead.pk).state == TaskState.RUNNING
    clock.now += 2.0
    assert reaper.run_if_due() == 1
    assert Task.objects.get(pk=dead.pk).state == TaskState.QUEUED

    # Between two rounds it does nothing, however often the loop calls it.
    again = _running(acme_api, "dead-worker-2")
    Task.objects.filter(pk=again.pk).update(lease_expires_at=timezone.now() - TICK)
    clock.now += 1.9
    assert reaper.run_if_due() == 0
    clock.now += 0.1
    assert reaper.run_if_due() == 1
