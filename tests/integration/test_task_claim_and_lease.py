"""A worker's hold on a task: claim once, renew while it owns it, finish only its own attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.tasks import payloads, services
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db


def _submit(api, prompt: str = "claim me please") -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    return Task.objects.get(pk=created.body["id"])


def _worker_died(task: Task) -> None:
    """Time passes with no renewal: the lease is over."""
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def _reclaimed_by_another_worker(task: Task) -> Task:
    """The lease runs out, the reaper requeues, a second worker takes attempt n+1."""
    _worker_died(task)
    requeued, failed = services.reap_expired_leases()
    assert [t.pk for t in requeued] == [task.pk] and failed == 0
    second = services.claim_task(task.pk, "worker-b")
    assert second is not None
    return second


def test_claim_takes_a_queued_task_once(acme_api):
    task = _submit(acme_api)
    assert (task.state, task.attempt, task.worker_name, task.lease_expires_at) == (TaskState.QUEUED, 0, "", None)
    before = timezone.now()

    claimed = services.claim_task(task.pk, "worker-a")

    assert claimed is not None and claimed.pk == task.pk
    assert claimed.state == TaskState.RUNNING
    assert claimed.attempt == 1
    assert claimed.worker_name == "worker-a"
    assert claimed.started_at >= before
    assert claimed.lease_expires_at >= before + timedelta(seconds=settings.TASK_LEASE_SECONDS)

    assert services.claim_task(task.pk, "worker-b") is None
    task.refresh_from_db()
    assert (task.state, task.attempt, task.worker_name) == (TaskState.RUNNING, 1, "worker-a")


def test_claim_of_a_cancelled_or_unknown_task_returns_none(acme_api):
    import uuid

    task = _submit(acme_api)
    services.cancel_task(task)

    assert services.claim_task(task.pk, "worker-a") is None
    task.refresh_from_db()
    assert (task.state, task.attempt, task.worker_name) == (TaskState.CANCELLED, 0, "")
    assert services.claim_task(uuid.uuid4(), "worker-a") is None


def _renew(*tasks: Task) -> set:
    return services.renew_leases({task.pk: task.attempt for task in tasks})


def test_renew_leases_extends_the_lease_of_the_owning_attempt(acme_api):
    claimed = services.claim_task(_submit(acme_api).pk, "worker-a")
    soon = timezone.now() + timedelta(seconds=1)
    Task.objects.filter(pk=claimed.pk).update(lease_expires_at=soon)

    assert _renew(claimed) == {claimed.pk}
    claimed.refresh_from_db()
    assert claimed.lease_expires_at > soon


def test_renew_leases_renews_many_tasks_at_once_and_names_those_to_stop(acme_api):
    kept = [services.claim_task(_submit(acme_api, f"keep {n}").pk, "worker-a") for n in range(3)]
    cancelled = services.claim_task(_submit(acme_api, "cancel me").pk, "worker-a")
    services.cancel_task(cancelled)
    lost = services.claim_task(_submit(acme_api, "lose me").pk, "worker-a")
    _reclaimed_by_another_worker(lost)
    soon = timezone.now() + timedelta(seconds=1)
    Task.objects.filter(pk__in=[t.pk for t in kept + [cancelled]]).update(lease_expires_at=soon)

    assert _renew(*kept, cancelled, lost) == {t.pk for t in kept}
    assert all(t.lease_expires_at > soon for t in Task.objects.filter(pk__in=[t.pk for t in kept]))
    assert Task.objects.get(pk=cancelled.pk).lease_expires_at == soon


def test_renew_leases_refuses_after_cancel_is_requested(acme_api):
    claimed = services.claim_task(_submit(acme_api).pk, "worker-a")

    cancelled = services.cancel_task(claimed)

    # A running task is not cancelled under the worker's feet: the worker is asked to stop.
    assert cancelled.state == TaskState.RUNNING and cancelled.cancel_requested is True
    assert _renew(claimed) == set()


def test_renew_leases_refuses_once_another_attempt_owns_the_task(acme_api):
    first = services.claim_task(_submit(acme_api).pk, "worker-a")
    second = _reclaimed_by_another_worker(first)
    assert second.attempt == 2

    assert _renew(first) == set()
    assert _renew(second) == {second.pk}


def test_renew_leases_refuses_after_the_reaper_requeued_the_task(acme_api):
    claimed = services.claim_task(_submit(acme_api).pk, "worker-a")
    _worker_died(claimed)
    services.reap_expired_leases()

    assert _renew(claimed) == set()
    claimed.refresh_from_db()
    assert claimed.state == TaskState.QUEUED and claimed.lease_expires_at is None


def test_finish_from_a_stale_attempt_returns_false_and_changes_nothing(acme_api):
    first = services.claim_task(_submit(acme_api).pk, "worker-a")
    second = _reclaimed_by_another_worker(first)
    snapshot = Task.objects.filter(pk=first.pk).values().get()

    recorded = services.finish_task(
        first,
        state=TaskState.SUCCEEDED,
        output="stale output",
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )

    assert recorded is False
    assert Task.objects.filter(pk=first.pk).values().get() == snapshot
    current = Task.objects.get(pk=first.pk)
    assert (current.state, current.attempt, current.worker_name) == (TaskState.RUNNING, 2, "worker-b")
    assert current.output_ciphertext is None and current.usage is None

    # The current attempt still records its result, once.
    usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert services.finish_task(second, state=TaskState.SUCCEEDED, output="claim me please", usage=usage) is True
    current.refresh_from_db()
    assert current.state == TaskState.SUCCEEDED
    assert payloads.read_output(current) == "claim me please"
    assert current.usage == usage
    assert current.lease_expires_at is None
    assert services.finish_task(second, state=TaskState.FAILED, output="", usage=None) is False
    current.refresh_from_db()
    assert current.state == TaskState.SUCCEEDED
