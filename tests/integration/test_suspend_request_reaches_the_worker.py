"""A suspension the scheduler asks for reaches the worker running the task at once
(the task-suspend wake-up), or at its next lease renewal when the wake-up is lost;
the keeper then calls the adapter's suspend (``on_suspend``) once. A cancel wins:
a task whose cancel was asked for is not asked to suspend.
"""

from __future__ import annotations

import threading

import pytest

from apps.core import notify
from apps.runtime.leases import LeaseKeeper
from apps.tasks import services, suspension
from apps.tasks.models import Task

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

FAILURE_WAIT = 30.0  # bounds a failure only: a delivered wake-up raises the flag at once


def _running(api, prompt: str = "suspend me") -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    task = services.claim_task(created.body["id"], "worker-a")
    assert task is not None
    return task


def test_the_wake_up_raises_the_suspend_flag_and_tells_the_adapter(acme_api):
    running = _running(acme_api)
    keeper = LeaseKeeper(renew_seconds=3600)  # only the wake-up can be in time
    keeper.start()
    adapter_told = threading.Event()
    try:
        held = keeper.hold(running, on_suspend=adapter_told.set)

        assert suspension.request_suspend([running.pk]) == [running.pk]

        assert held.suspend.wait(FAILURE_WAIT)
        assert adapter_told.wait(FAILURE_WAIT)
        assert not held.must_stop  # suspended, not stopped: its lease is still renewed
    finally:
        keeper.stop()


def test_without_the_wake_up_the_next_renewal_finds_the_request(acme_api):
    running = _running(acme_api)
    keeper = LeaseKeeper(renew_seconds=3600)  # never started: renewals are run by hand
    calls: list[str] = []
    held = keeper.hold(running, on_suspend=lambda: calls.append("suspend"))
    Task.objects.filter(pk=running.pk).update(suspend_requested=True)  # asked, its wake-up lost

    keeper.renew_once()
    keeper.renew_once()

    assert held.must_suspend and calls == ["suspend"]
    assert not held.must_stop


def test_a_task_whose_cancel_was_asked_for_is_not_asked_to_suspend(acme_api):
    running = _running(acme_api)
    services.cancel_task(running)

    assert suspension.request_suspend([running.pk]) == []
    assert not Task.objects.get(pk=running.pk).suspend_requested


def test_only_running_tasks_are_asked(acme_api):
    queued = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "still queued"}).body["id"]
    running = _running(acme_api, "running")

    assert suspension.request_suspend([queued, running.pk]) == [running.pk]
    assert suspension.request_suspend([running.pk]) == []  # asked once


def test_the_keeper_takes_the_ask_from_the_wake_up_without_reading_the_row(acme_api):
    """The scheduler commits its ask before the wake-up: the keeper raises the flag on the
    payload alone (one database round trip less before the slot frees). Here the row
    was never flagged, so a renewal would not raise it: only the payload can."""
    running = _running(acme_api)
    keeper = LeaseKeeper(renew_seconds=3600)
    keeper.start()
    try:
        held = keeper.hold(running)
        other = keeper.hold(_running(acme_api, "not named"))

        notify.wake(suspension.SUSPEND_CHANNEL, f"{suspension.SUSPEND_PAYLOAD_PREFIX}{running.pk}")

        assert held.suspend.wait(FAILURE_WAIT)
        assert not other.must_suspend and not held.must_stop
    finally:
        keeper.stop()
