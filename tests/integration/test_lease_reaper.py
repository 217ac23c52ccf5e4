"""Nothing is stranded: expired leases are requeued (or failed after the last attempt)
and queued tasks whose queue message may be lost become ready for the dispatcher again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.scheduler.dispatch import reap_and_requeue, redispatch_stale
from apps.tasks import payloads, services
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db


@pytest.fixture
def huey(model_queues):
    """The echo model's queue, empty at the start: what a test dispatches is all it holds."""
    return model_queues("echo").huey


def _submit(api, prompt: str = "reap me") -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    return Task.objects.get(pk=created.body["id"])


def _lease_runs_out(task: Task) -> None:
    """The worker stopped renewing and its lease has passed."""
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def _queued_seconds_ago(task: Task, seconds: float) -> None:
    Task.objects.filter(pk=task.pk).update(queued_at=timezone.now() - timedelta(seconds=seconds))


def _queued_ids(huey) -> list[str]:
    return sorted(message.args[0] for message in huey.pending())


# --- The lease reaper ------------------------------------------------------------------------


def test_a_running_task_with_an_expired_lease_is_requeued(acme_api):
    task = _submit(acme_api)
    services.claim_task(task.pk, "dead-worker")
    _lease_runs_out(task)

    requeued, failed = services.reap_expired_leases()

    assert [t.pk for t in requeued] == [task.pk]
    assert failed == 0
    task.refresh_from_db()
    assert task.state == TaskState.QUEUED
    assert task.worker_name == ""
    assert task.lease_expires_at is None
    assert task.dispatched_at is None
    assert task.attempt == 1  # the next claim makes it attempt 2
    assert services.claim_task(task.pk, "live-worker").attempt == 2


def test_an_expired_lease_on_the_last_attempt_fails_the_task_as_worker_lost(acme_api):
    task = _submit(acme_api)
    for attempt in range(1, settings.TASK_MAX_ATTEMPTS):
        assert services.claim_task(task.pk, f"worker-{attempt}").attempt == attempt
        _lease_runs_out(task)
        assert [t.pk for t in services.reap_expired_leases()[0]] == [task.pk]

    services.claim_task(task.pk, "last-worker")
    _lease_runs_out(task)
    requeued, failed = services.reap_expired_leases()

    assert requeued == [] and failed == 1
    task.refresh_from_db()
    assert task.state == TaskState.FAILED
    assert task.error_code == "worker_lost"
    assert task.attempt == settings.TASK_MAX_ATTEMPTS
    assert task.finished_at is not None and task.lease_expires_at is None
    assert services.claim_task(task.pk, "another-worker") is None


def test_a_running_task_with_a_live_lease_is_untouched(acme_api):
    task = _submit(acme_api)
    services.claim_task(task.pk, "live-worker")
    snapshot = Task.objects.filter(pk=task.pk).values().get()

    assert services.reap_expired_leases() == ([], 0)
    assert reap_and_requeue() == 0

    assert Task.objects.filter(pk=task.pk).values().get() == snapshot


def test_queued_and_finished_tasks_are_not_reaped(acme_api):
    queued = _submit(acme_api, "still queued")
    finished = _submit(acme_api, "done")
    services.claim_task(finished.pk, "worker")
    services.finish_task(Task.objects.get(pk=finished.pk), state=TaskState.SUCCEEDED, output="done", usage=None)
    snapshots = {t.pk: Task.objects.filter(pk=t.pk).values().get() for t in (queued, finished)}

    assert services.reap_expired_leases() == ([], 0)

    assert {t.pk: Task.objects.filter(pk=t.pk).values().get() for t in (queued, finished)} == snapshots


def test_reap_and_requeue_makes_the_task_ready_for_the_dispatcher(acme_api, huey, dispatcher):
    expired, live = _submit(acme_api, "expired"), _submit(acme_api, "live")
    services.claim_task(expired.pk, "dead-worker")
    services.claim_task(live.pk, "live-worker")
    _lease_runs_out(expired)

    assert reap_and_requeue() == 1
    expired.refresh_from_db()
    assert expired.state == TaskState.QUEUED and expired.dispatched_at is None

    assert dispatcher.run_once() == 1
    assert _queued_ids(huey) == [str(expired.pk)]
    expired.refresh_from_db()
    assert expired.dispatched_at is not None


# --- Lost queue messages ----------------------------------------------------------------------


def test_ready_tasks_are_handed_out_once_and_fresh_dispatches_are_left_alone(acme_api, huey, dispatcher):
    first, second = _submit(acme_api, "first"), _submit(acme_api, "second")
    # (No transaction commits in this test, so nothing was dispatched yet.)
    assert dispatcher.run_once() == 2
    assert _queued_ids(huey) == sorted([str(first.pk), str(second.pk)])

    # Dispatched just now: neither is made ready again, nor sent twice.
    assert redispatch_stale() == 0
    assert dispatcher.run_once() == 0
    assert huey.pending_count() == 2


def test_a_dispatch_older_than_the_stale_limit_is_sent_again(acme_api, huey, dispatcher):
    lost, recent = _submit(acme_api, "lost"), _submit(acme_api, "recent")
    long_ago = timezone.now() - timedelta(seconds=settings.DISPATCH_STALE_SECONDS + 10)
    Task.objects.filter(pk=lost.pk).update(dispatched_at=long_ago)
    Task.objects.filter(pk=recent.pk).update(dispatched_at=timezone.now())

    assert redispatch_stale() == 1
    lost.refresh_from_db()
    assert lost.dispatched_at is None  # ready again
    # One slot is taken by "recent" (handed out, not yet claimed): three remain.
    assert dispatcher.run_once() == 1

    assert _queued_ids(huey) == [str(lost.pk)]
    lost.refresh_from_db()
    assert lost.dispatched_at > long_ago


def test_redispatch_leaves_running_and_cancelled_tasks_alone(acme_api, huey):
    running, cancelled = _submit(acme_api, "running"), _submit(acme_api, "cancelled")
    services.claim_task(running.pk, "worker")
    services.cancel_task(cancelled)
    Task.objects.filter(pk__in=[running.pk, cancelled.pk]).update(queued_at=timezone.now() - timedelta(minutes=10))

    assert redispatch_stale() == 0
    assert huey.pending_count() == 0


def test_a_redispatched_task_runs_once_even_with_a_duplicate_message(acme_api, huey, dispatcher):
    from apps.runtime.execution import execute_task

    task = _submit(acme_api, "only once")
    dispatcher.run_once()
    Task.objects.filter(pk=task.pk).update(dispatched_at=timezone.now() - timedelta(days=1))
    redispatch_stale()
    dispatcher.run_once()
    assert _queued_ids(huey) == [str(task.pk), str(task.pk)]

    for _ in huey.pending():
        execute_task(task.pk)

    task.refresh_from_db()
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 1)
    assert payloads.read_output(task) == "only once"
