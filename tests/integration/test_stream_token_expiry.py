"""A stream token lasts 5 minutes from when it was issued, reconnects included
(Contracts): it opens its task's stream, again and again, until then, and is
refused at the handshake afterwards.

The wall clock is the outside world here: the test sets it instead of waiting.
Stream tokens are signed with a timestamp read from ``time.time`` (Django's
TimestampSigner), and that is the clock the fixture controls; a token whose
expiry came from another clock would outlive the test's +5 minutes and fail it.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.stream_support import handshake

# The handshake's auth reads the database from another thread: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

FIVE_MINUTES = 300


class WallClock:
    """time.time, frozen at a whole second (so a token's age is exact) until the test moves it."""

    def __init__(self) -> None:
        self.start = float(int(time.time()))
        self.now = self.start

    def time(self) -> float:
        return self.now

    def set(self, seconds_after_start: int) -> None:
        self.now = self.start + seconds_after_start


@pytest.fixture
def wall_clock(monkeypatch) -> WallClock:
    clock = WallClock()
    monkeypatch.setattr(time, "time", clock.time)
    return clock


def test_a_stream_token_opens_its_stream_for_five_minutes_then_never_again(acme_api, wall_clock):
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "watched from a browser"})
    assert created.status == 201, created.body
    task_id = created.body["id"]
    issued = acme_api.post(f"/api/v1/tasks/{task_id}/stream-token")
    assert issued.status == 200, issued.body
    assert issued.body["expires_in"] == FIVE_MINUTES
    token = issued.body["token"]

    # The browser connects, drops, and reconnects with the same token within the five minutes.
    for seconds in (0, 60, FIVE_MINUTES - 1):
        wall_clock.set(seconds)
        assert handshake(task_id, stream_token=token).accepted, f"refused {seconds} s after issue"

    wall_clock.set(FIVE_MINUTES + 1)
    assert not handshake(task_id, stream_token=token).accepted

    # A fresh token opens the stream again: the refusal was the old token's age, nothing else.
    fresh = acme_api.post(f"/api/v1/tasks/{task_id}/stream-token").body["token"]
    assert handshake(task_id, stream_token=fresh).accepted
