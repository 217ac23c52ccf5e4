"""What the streams of one server process know about their tasks' state, read in batches.

A stream that has nothing to relay looks at its task once a second: to send a
status message while the task waits (with its queue position and wait
estimate) and to notice an end whose event never reached the log. Done by each
connection on its own, that was a few queries per waiting connection per
second: with 1,000 clients connected to queued tasks, thousands of queries a
second on the server's one database thread, and the streams of the tasks that
did run fell behind (docs/benchmarks.md, streaming relay). Here every stream
of the process asks one board; the board answers from a snapshot at most
``max_age`` seconds old, and one refresh reads the state and wait of every
task asked about since the last one (apps.scheduler.estimates.waits_of).
"""

from __future__ import annotations

import asyncio
import uuid

from channels.db import database_sync_to_async

from apps.scheduler.estimates import waits_of
from apps.tasks.models import TaskState

Wait = dict[str, int | float | None]
UNKNOWN: tuple[str, Wait] = (TaskState.CANCELLED, {"queue_position": None, "estimated_start_seconds": None})


class StatusBoard:
    def __init__(self, max_age: float = 0.5) -> None:
        self.max_age = max_age
        self._snapshot: dict[uuid.UUID, tuple[str, Wait]] = {}
        self._taken_at = float("-inf")
        self._asked: set[uuid.UUID] = set()  # asked about since the last refresh began
        self._covered: frozenset[uuid.UUID] = frozenset()  # what the snapshot answers for
        self._refresh: asyncio.Future | None = None  # the refresh in flight, shared by all who wait
        self.refreshes = 0  # reads of the database so far (for tests and diagnostics)

    async def current(self, task_id: uuid.UUID) -> tuple[str, Wait]:
        """(state, wait) of the task; a task that no longer exists reads as cancelled."""
        self._asked.add(task_id)
        oldest_wanted = asyncio.get_running_loop().time() - self.max_age
        # A refresh already in flight when this was asked may not cover it, or may
        # have begun too long ago: then one more (it begins after this call, so it does).
        while task_id not in self._covered or self._taken_at < oldest_wanted:
            await self._refreshed()
        return self._snapshot.get(task_id, UNKNOWN)

    async def _refreshed(self) -> None:
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._read())
        refresh = self._refresh
        await asyncio.shield(refresh)  # one caller's cancellation must not cancel everyone's read

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            asked, self._asked = self._asked, set()
            taken_at = loop.time()
            # Tasks nobody asked about since the last refresh are forgotten.
            self.refreshes += 1
            self._snapshot = await database_sync_to_async(waits_of)(asked)
            self._covered = frozenset(asked)
            self._taken_at = taken_at
        finally:
            self._refresh = None


_board: StatusBoard | None = None


def status_board() -> StatusBoard:
    """The process's board (created in the event loop that serves the streams)."""
    global _board
    if _board is None:
        _board = StatusBoard()
    return _board
