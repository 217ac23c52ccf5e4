"""At equal class, a tenant under its fair share of a model's slots takes a slot from
a tenant over its own: the over-share tenant's generation started last is asked to
suspend. A tenant within its share keeps its slots, and a class whose waiting tasks
have aged does not outrank its own running tasks (docs/scheduling.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.scheduler.dispatcher import Dispatcher
from apps.tasks.models import Task
from apps.tenants.services import change_tenant_plan
from tests.integration.preemption_support import asked, claim, handed_out, submit, worker

pytestmark = pytest.mark.django_db


def test_the_over_share_tenants_latest_generation_gives_way_to_an_under_share_tenant(acme_api, globex_api):
    worker(slots=4)
    dispatcher = Dispatcher()
    flood = [submit(acme_api, f"flood {n}") for n in range(6)]
    assert dispatcher.run_once() == 4
    assert handed_out() == set(flood[:4])
    for n, task_id in enumerate(flood[:4]):
        claim(task_id, seconds_ago=60 - n)
    submit(globex_api, "quiet")  # globex: nothing running, a share of 2 of the 4 slots; acme holds 4

    assert dispatcher.run_once() == 1  # the slot being freed is handed to globex's task
    assert asked() == {flood[3]}


def test_a_tenant_within_its_share_keeps_its_slots(acme_api, globex_api):
    worker(slots=4)
    dispatcher = Dispatcher()
    ours = [submit(acme_api, f"a {n}") for n in range(2)] + [submit(globex_api, f"g {n}") for n in range(2)]
    assert dispatcher.run_once() == 4
    for task_id in ours:
        claim(task_id)
    submit(globex_api, "one more")  # globex would go over its share of 2 by taking a third slot

    assert dispatcher.run_once() == 0
    assert asked() == set()


def test_the_share_follows_the_plans_weights(acme, acme_api, globex_api):
    change_tenant_plan(acme, {"weight": 3})
    worker(slots=4)
    dispatcher = Dispatcher()
    heavy = [submit(acme_api, f"a {n}") for n in range(3)]
    light = submit(globex_api, "g 0")
    assert dispatcher.run_once() == 4
    for task_id in [*heavy, light]:
        claim(task_id)
    submit(globex_api, "g 1")  # acme's share is 3 of 4 slots at weights 3 : 1: it is not over

    assert dispatcher.run_once() == 0
    assert asked() == set()


def test_a_backlog_aged_past_its_class_does_not_preempt_its_own_class(acme_api):
    worker(slots=4)
    dispatcher = Dispatcher(aging_seconds=60)
    flood = [submit(acme_api, f"flood {n}") for n in range(6)]
    # Queued ten minutes ago: the normal class competes as interactive, running tasks and waiting ones alike.
    Task.objects.filter(pk__in=flood).update(queued_at=timezone.now() - timedelta(minutes=10))
    assert dispatcher.run_once() == 4
    for task_id in flood[:4]:
        claim(task_id)

    assert dispatcher.run_once() == 0
    assert asked() == set()
