"""The worker's lease keeper: one renewal round for every running task, and a stop flag per task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.runtime.leases import LeaseKeeper
from apps.tasks import services
from apps.tasks.models import Task

pytestmark = pytest.mark.django_db


def _running(api, count: int) -> list[Task]:
    tasks = []
    for n in range(count):
        created = api.post("/api/v1/tasks", {"model": "echo", "prompt": f"keep me running {n}"})
        assert created.status == 201, created.body
        tasks.append(services.claim_task(created.body["id"], "worker-a"))
    return tasks


def test_one_round_renews_every_held_lease_with_a_fixed_number_of_queries(acme_api):
    keeper = LeaseKeeper()
    tasks = _running(acme_api, 12)
    holds = [keeper.hold(task) for task in tasks]
    soon = timezone.now() + timedelta(seconds=1)
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(lease_expires_at=soon)

    with CaptureQueriesContext(connection) as queries:
        keeper.renew_once()

    assert len(queries.captured_queries) <= 2  # one UPDATE, one SELECT: not one per task
    assert all(task.lease_expires_at > soon for task in Task.objects.filter(pk__in=[t.pk for t in tasks]))
    assert not any(held.must_stop for held in holds)


def test_a_cancelled_task_is_told_to_stop_and_the_others_are_not(acme_api):
    keeper = LeaseKeeper()
    going, cancelled = _running(acme_api, 2)
    going_hold, cancelled_hold = keeper.hold(going), keeper.hold(cancelled)

    services.cancel_task(cancelled)
    keeper.renew_once()

    assert cancelled_hold.must_stop and not going_hold.must_stop


def test_a_released_task_is_no_longer_renewed(acme_api):
    keeper = LeaseKeeper()
    (task,) = _running(acme_api, 1)
    keeper.release(keeper.hold(task))
    soon = timezone.now() + timedelta(seconds=1)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=soon)

    keeper.renew_once()

    assert Task.objects.get(pk=task.pk).lease_expires_at == soon
