"""A cancel reaches the worker running the task at once, not at its next lease renewal.

The keeper here renews once an hour: only the wake-up that ``cancel_task``
sends (apps.core.notify, after its commit) can raise the stop flag within the
test's wait, and with it the adapter's cancel (``on_stop``).
"""

from __future__ import annotations

import threading

import pytest

from apps.runtime.leases import LeaseKeeper
from apps.tasks import services

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

FAILURE_WAIT = 30.0  # bounds a failure only: a delivered wake-up stops the task at once


def test_cancelling_a_running_task_stops_it_through_the_keepers_wake_up(acme_api):
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "stop me"})
    assert created.status == 201, created.body
    running = services.claim_task(created.body["id"], "worker-a")
    keeper = LeaseKeeper(renew_seconds=3600)
    keeper.start()
    adapter_told = threading.Event()
    try:
        held = keeper.hold(running, on_stop=adapter_told.set)

        services.cancel_task(running)

        assert held.stop.wait(FAILURE_WAIT)
        assert adapter_told.wait(FAILURE_WAIT)
    finally:
        keeper.stop()

