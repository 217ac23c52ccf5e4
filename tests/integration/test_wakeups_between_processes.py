"""apps.core.notify: a wake-up sent by one process reaches a subscriber in another.

The transport is the suite's mode: named pipes under DATA_DIR on SQLite runs,
Redis pub/sub on PostgreSQL + Redis runs. The generous waits only bound a
failure: a delivered wake-up returns at once, a lost one would hang to the
end of the wait and fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from apps.core import notify

REPO_ROOT = Path(__file__).resolve().parents[2]
FAILURE_WAIT = 30.0


def _wake_from_another_process(channel: str, payload: str) -> None:
    code = (
        "import django; django.setup(); from apps.core import notify; "
        f"notify.wake({channel!r}, {payload!r})"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="llmagentos.settings", PYTHONPATH=str(REPO_ROOT))
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=120)


def test_a_wake_up_from_another_process_reaches_the_subscriber_with_its_payload():
    channel = f"test-{uuid.uuid4().hex}"
    subscription = notify.subscribe(channel)
    try:
        _wake_from_another_process(channel, "task-42")

        woken = subscription.wait(FAILURE_WAIT)
    finally:
        subscription.close()

    assert woken is not None
    assert woken.payloads == frozenset({"task-42"}) and woken.complete


def test_a_wake_up_sent_before_the_wait_is_kept_and_taken_once():
    channel = f"test-{uuid.uuid4().hex}"
    subscription = notify.subscribe(channel)
    try:
        notify.wake(channel, "a")
        notify.wake(channel, "b")

        # Both may come in one wait, or "a" alone first if the listener passed it on
        # before "b" arrived: either way each is taken once, then nothing is left.
        taken: list[str] = []
        while set(taken) != {"a", "b"}:
            woken = subscription.wait(FAILURE_WAIT)
            assert woken is not None, taken
            taken += sorted(woken.payloads)
        left = subscription.wait(0)
    finally:
        subscription.close()

    assert sorted(taken) == ["a", "b"]
    assert left is None


def test_only_subscribed_channels_wake_a_subscription():
    mine, other = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    subscription = notify.subscribe(mine)
    try:
        notify.wake(other, "not for me")
        notify.wake(mine, "for me")  # delivered after the other one (same sender, same order)

        woken = subscription.wait(FAILURE_WAIT)
    finally:
        subscription.close()

    assert woken is not None and woken.payloads == frozenset({"for me"})
