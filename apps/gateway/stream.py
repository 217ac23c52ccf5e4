"""A task's events as they happen, pushed by this server process's stream hub
(apps.streaming.hub: one reader per process, the WebSocket streams' too).

Nothing here polls the task: each chunk wakes the reader. A reader with
nothing to relay for a second asks the process's status board (one batched
read for every stream of the process) whether the task ended without its
end event reaching the log, as the WebSocket consumer does, and says it is
idle so the caller can keep a quiet connection alive.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from apps.core.aio import raise_if_cancelled
from apps.security.crypto import TenantCipher
from apps.streaming.events import CHUNK, DONE, RESTART, client_message, end_of
from apps.streaming.hub import hub
from apps.streaming.log import stream_log
from apps.streaming.status import status_board
from apps.tasks.models import TERMINAL_STATES, Task
from apps.tasks.payloads import read_output

TICK_SECONDS = 1.0
IDLE_SECONDS = 15.0
# A task that ended with no end event in its log (the log expired, or it was
# never written) is ended from its row after this long without news.
END_FALLBACK_SECONDS = 2.0


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Restarted:
    """A new attempt begins: the text of the earlier ones is void."""

    attempt: int


@dataclass(frozen=True)
class Ended:
    status: str
    usage: dict[str, int] | None
    error: dict[str, str] | None
    # The recorded output, when the end came from the task's row (the log lost
    # the events); None when the text came through the stream.
    output: str | None = None


@dataclass(frozen=True)
class Idle:
    """Nothing happened for IDLE_SECONDS."""


Event = Text | Restarted | Ended | Idle


async def follow(task_id: uuid.UUID, cipher: TenantCipher) -> AsyncGenerator[Event, None]:
    """The task's events from its first (a replay of what is logged already) to
    its end, which is the last one."""
    subscription = await hub().subscribe(task_id)
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    try:
        while True:
            try:
                async with asyncio.timeout(TICK_SECONDS):
                    stored = await subscription.queue.get()
            except TimeoutError:
                raise_if_cancelled()
                state, _ = await status_board().current(task_id)
                quiet = loop.time() - quiet_since
                if state in TERMINAL_STATES and quiet >= END_FALLBACK_SECONDS and not await _logged_end(task_id):
                    yield await database_sync_to_async(_end_from_row)(task_id)
                    return
                if quiet >= IDLE_SECONDS:
                    quiet_since = loop.time()
                    yield Idle()
                continue
            quiet_since = loop.time()
            message: dict[str, Any] = client_message(cipher, stored)
            if stored.kind == CHUNK:
                yield Text(message["text"])
            elif stored.kind == RESTART:
                yield Restarted(message["attempt"])
            elif stored.kind == DONE:
                yield Ended(message["status"], message["usage"], message["error"])
                return
    finally:
        hub().unsubscribe(subscription)


async def _logged_end(task_id: uuid.UUID) -> bool:
    return any(stored.kind == DONE for _, stored in await stream_log().read_all(task_id))


def _end_from_row(task_id: uuid.UUID) -> Ended:
    task = Task.objects.select_related("tenant").get(pk=task_id)
    body = end_of(task)
    return Ended(body["status"], body["usage"], body["error"], read_output(task) or "")
