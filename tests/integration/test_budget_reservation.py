"""A task reserves its worst-case cost at admission and settles to its actual
usage when it ends — succeeded, failed or cancelled — exactly once.

The echo model counts whitespace-separated words as tokens, so every figure
here is exact: "one two three" with max_tokens 10 reserves 3 + 10 = 13.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.runtime.execution import execute_task
from apps.scheduler.admission import settle_forgotten, settle_task
from apps.tasks import services
from apps.tasks.models import Task, TaskState
from apps.tenants.models import BudgetLedger, TaskCharge
from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db

BUDGET = 1000
PROMPT = "one two three"  # 3 tokens for the echo model
MAX_TOKENS = 10
WORST_CASE = 3 + MAX_TOKENS


@pytest.fixture(autouse=True)
def budget(acme):
    change_tenant_plan(acme, {"budget_tokens": BUDGET})


def _submit(api, prompt: str = PROMPT, max_tokens: int = MAX_TOKENS) -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt, "max_tokens": max_tokens})
    assert created.status == 201, created.body
    return Task.objects.select_related("tenant").get(pk=created.body["id"])


def _budget(api) -> tuple[int, int, int]:
    usage = api.get("/api/v1/usage")
    assert usage.status == 200, usage.body
    body = usage.body
    return body["spent_tokens"], body["reserved_tokens"], body["remaining_tokens"]


def _ledger(tenant) -> tuple[int, int]:
    ledger = BudgetLedger.objects.get(tenant=tenant)
    return ledger.spent_tokens, ledger.reserved_tokens


def test_admission_reserves_prompt_plus_max_tokens(acme_api):
    assert _budget(acme_api) == (0, 0, BUDGET)

    _submit(acme_api)
    assert _budget(acme_api) == (0, WORST_CASE, BUDGET - WORST_CASE)

    _submit(acme_api, "a b c d e", max_tokens=100)
    assert _budget(acme_api) == (0, WORST_CASE + 105, BUDGET - WORST_CASE - 105)


def test_a_succeeded_task_is_charged_its_actual_usage_and_the_rest_returned(acme_api):
    task = _submit(acme_api)
    execute_task(task.pk)

    task.refresh_from_db()
    assert task.state == TaskState.SUCCEEDED
    assert task.usage == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert _budget(acme_api) == (6, 0, BUDGET - 6)


def test_a_task_cancelled_before_it_started_costs_nothing(acme_api):
    task = _submit(acme_api)
    kept = _submit(acme_api, "four five", max_tokens=5)

    acme_api.post(f"/api/v1/tasks/{task.id}/cancel")

    assert Task.objects.get(pk=task.pk).state == TaskState.CANCELLED
    # Only the other task's reservation (2 + 5) is left.
    assert _budget(acme_api) == (0, 7, BUDGET - 7)
    assert Task.objects.get(pk=kept.pk).state == TaskState.QUEUED


def test_a_task_cancelled_while_running_is_charged_what_it_used(acme, acme_api):
    task = _submit(acme_api)
    running = services.claim_task(task.pk, "worker-a")
    services.cancel_task(task)  # running: the worker is asked to stop
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}

    assert services.finish_task(running, state=TaskState.CANCELLED, output="one", usage=usage)

    assert _budget(acme_api) == (4, 0, BUDGET - 4)


def test_a_failed_task_settles_too(acme_api):
    without_usage = _submit(acme_api)
    with_usage = _submit(acme_api)
    first = services.claim_task(without_usage.pk, "worker-a")
    second = services.claim_task(with_usage.pk, "worker-a")

    services.finish_task(first, state=TaskState.FAILED, output="", usage=None, error_code="generation_failed")
    assert _budget(acme_api) == (0, WORST_CASE, BUDGET - WORST_CASE)

    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    services.finish_task(second, state=TaskState.FAILED, output="one two", usage=usage, error_code="generation_failed")
    assert _budget(acme_api) == (5, 0, BUDGET - 5)


def test_a_task_failed_by_the_lease_reaper_settles(acme_api, settings):
    settings.TASK_MAX_ATTEMPTS = 1
    task = _submit(acme_api)
    services.claim_task(task.pk, "worker-that-dies")
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    _, failed = services.reap_expired_leases()

    assert failed == 1
    assert _budget(acme_api) == (0, 0, BUDGET)


def test_settlement_happens_once_however_often_the_end_is_reported(acme, acme_api):
    task = _submit(acme_api)
    running = services.claim_task(task.pk, "worker-a")
    usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert services.finish_task(running, state=TaskState.SUCCEEDED, output=PROMPT, usage=usage)
    assert _ledger(acme) == (6, 0)

    # The same attempt reporting again, a cancel after the end, an erase, and
    # a direct second settlement: none of them charges or returns anything.
    assert not services.finish_task(running, state=TaskState.SUCCEEDED, output=PROMPT, usage=usage)
    services.cancel_task(Task.objects.get(pk=task.pk))
    assert acme_api.delete(f"/api/v1/tasks/{task.id}").status == 204
    assert settle_task(task.pk) is False

    assert _ledger(acme) == (6, 0)
    charge = TaskCharge.objects.get(task_id=task.pk)
    assert (charge.reserved_tokens, charge.prompt_tokens, charge.completion_tokens) == (WORST_CASE, 3, 3)
    assert charge.settled_at is not None


def test_usage_above_the_reservation_is_charged_in_full(acme, acme_api):
    # Only a prompt estimate can be low (characters / 4 where the model's adapter
    # cannot count). The tenant used the tokens: all are charged, even past the
    # budget, and then nothing more is admitted.
    change_tenant_plan(acme, {"budget_tokens": 2 * WORST_CASE})
    task = _submit(acme_api)
    other = _submit(acme_api)
    running = services.claim_task(task.pk, "worker-a")
    usage = {"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50}

    services.finish_task(running, state=TaskState.SUCCEEDED, output="x", usage=usage)

    assert _budget(acme_api) == (50, WORST_CASE, 0)
    assert _ledger(acme) == (50, WORST_CASE)
    key_usage = acme_api.get("/api/v1/usage").body["by_key"][0]
    assert (key_usage["prompt_tokens"], key_usage["completion_tokens"], key_usage["total_tokens"]) == (40, 10, 50)
    refused = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "one", "max_tokens": 1})
    assert (refused.status, refused.body["error"]["code"]) == (402, "budget_exceeded")

    acme_api.post(f"/api/v1/tasks/{other.id}/cancel")  # its reservation returns; the overrun stays spent
    assert _budget(acme_api) == (50, 0, 0)


def test_an_idempotent_replay_reserves_nothing_more(acme_api):
    body = {"model": "echo", "prompt": PROMPT, "max_tokens": MAX_TOKENS}
    first = acme_api.post("/api/v1/tasks", body, **{"Idempotency-Key": "order-42"})
    again = acme_api.post("/api/v1/tasks", body, **{"Idempotency-Key": "order-42"})

    assert (first.status, again.status) == (201, 201)
    assert again.body["id"] == first.body["id"]
    assert _budget(acme_api) == (0, WORST_CASE, BUDGET - WORST_CASE)


def test_the_sweep_settles_an_ended_task_whose_settlement_was_lost(acme, acme_api, settings):
    settings.SETTLEMENT_SWEEP_AFTER_SECONDS = 0
    ended = _submit(acme_api)
    still_queued = _submit(acme_api)
    # What a process that died right after the state change leaves behind:
    # the task ended, its reservation still open.
    Task.objects.filter(pk=ended.pk).update(state=TaskState.CANCELLED, finished_at=timezone.now())
    assert _ledger(acme) == (0, 2 * WORST_CASE)

    assert settle_forgotten() == 1

    assert _ledger(acme) == (0, WORST_CASE)
    assert TaskCharge.objects.get(task_id=still_queued.pk).settled_at is None
    assert settle_forgotten() == 0
