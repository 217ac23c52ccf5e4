"""The dispatch step: only as many tasks as free slots, in policy order, passing
over tenants at their running cap (who keep their place, and get no error)."""

from __future__ import annotations

import pytest

from apps.runtime.execution import execute_task
from apps.scheduler.dispatcher import Dispatcher
from apps.tasks import services
from apps.tasks.models import Task, TaskState
from apps.tenants.services import change_tenant_plan
from apps.workers.services import register_worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_slot(db) -> Dispatcher:
    register_worker(name="single-slot", host="h", pid=1, slots=1, device_info={})
    return Dispatcher()


def _submit(api, prompt: str, **extra) -> str:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt, **extra})
    assert created.status == 201, created.body
    return created.body["id"]


def _handed_out() -> set[str]:
    handed_out = Task.objects.filter(state=TaskState.QUEUED, dispatched_at__isnull=False)
    return {str(pk) for pk in handed_out.values_list("pk", flat=True)}


def _run_handed_out() -> list[str]:
    """Workers run what was handed out (the order of the handing is the order of service)."""
    ran = sorted(_handed_out())
    for task_id in ran:
        execute_task(task_id)
    return ran


def test_no_more_than_the_free_slots_are_handed_out(acme_api, dispatcher):
    ids = [_submit(acme_api, f"p{i}") for i in range(6)]
    assert dispatcher.run_once() == 4  # the test worker has 4 slots
    assert dispatcher.run_once() == 0  # nothing freed yet
    execute_task(sorted(_handed_out())[0])  # one finishes
    assert dispatcher.run_once() == 1
    assert len(_handed_out()) == 4 and len(ids) == 6


def test_a_tenant_at_its_running_cap_waits_without_losing_its_place(acme, acme_api, globex_api, dispatcher):
    change_tenant_plan(acme, {"max_running": 1})
    acme_first = _submit(acme_api, "a1")
    acme_second = _submit(acme_api, "a2")
    globex_task = _submit(globex_api, "g1")

    assert dispatcher.run_once() == 2  # acme's cap leaves two of the four slots unused
    assert _handed_out() == {acme_first, globex_task}
    assert Task.objects.get(pk=acme_second).state == TaskState.QUEUED  # waiting, not refused

    execute_task(acme_first)
    assert dispatcher.run_once() == 1
    assert acme_second in _handed_out()


def test_a_flooding_tenant_waits_behind_its_own_work(acme_api, globex_api, one_slot):
    flood = [_submit(acme_api, f"flood {i}") for i in range(10)]
    quiet = [_submit(globex_api, f"quiet {i}") for i in range(2)]
    order = []
    while len(order) < 12:
        assert one_slot.run_once() == 1
        order += _run_handed_out()
    # The quiet tenant's two tasks are served among the first four, not after the ten.
    assert {order.index(task_id) for task_id in quiet} <= {0, 1, 2, 3}
    assert set(order) == set(flood) | set(quiet)


def test_higher_classes_first(acme_api, one_slot):
    batch = _submit(acme_api, "b", priority="batch")
    normal = _submit(acme_api, "n")
    interactive = _submit(acme_api, "i", priority="interactive")
    order = []
    for _ in range(3):
        one_slot.run_once()
        order += _run_handed_out()
    assert order == [interactive, normal, batch]


def test_a_cancelled_ready_task_is_dropped_from_the_policy(acme_api):
    dispatcher = Dispatcher()
    kept = _submit(acme_api, "kept")
    dropped = _submit(acme_api, "dropped")
    assert dispatcher.run_once() == 0  # no worker yet: both are known to the policy, neither handed out
    services.cancel_task(Task.objects.get(pk=dropped))
    register_worker(name="late-worker", host="h", pid=1, slots=4, device_info={})

    assert dispatcher.run_once() == 1
    assert _handed_out() == {kept}


def test_nothing_is_handed_out_without_a_live_worker(acme_api):
    _submit(acme_api, "nobody serves me")
    assert Dispatcher().run_once() == 0
