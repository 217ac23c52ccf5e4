"""Server side: one reader per server process, fanning events out to its WebSockets.

Each subscription first gets the task's whole log (the replay), then the
live tail, each event exactly once and in order. The hub reads "everything
after cursor C" for all watched tasks in one call; a subscription takes
events from a read only when that read started at or before its own
position, so joining mid-read can neither skip nor repeat an event.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from apps.streaming.events import StoredEvent
from apps.streaming.log import ORIGIN, Cursor, StreamLog, stream_log

logger = logging.getLogger(__name__)

READ_TIMEOUT_SECONDS = 0.1


@dataclass(eq=False)
class Subscription:
    task_id: uuid.UUID
    position: Cursor = ORIGIN
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class StreamHub:
    def __init__(self, log: StreamLog) -> None:
        self._log = log
        self._subscriptions: dict[uuid.UUID, list[Subscription]] = {}
        self._cursors: dict[uuid.UUID, Cursor] = {}
        self._reader: asyncio.Task | None = None

    async def subscribe(self, task_id: uuid.UUID) -> Subscription:
        subscription = Subscription(task_id)
        for cursor, event in await self._log.read_all(task_id):
            subscription.position = cursor
            subscription.queue.put_nowait(event)
        # No await from here on: registration is atomic with respect to the reader.
        self._subscriptions.setdefault(task_id, []).append(subscription)
        current = self._cursors.get(task_id)
        self._cursors[task_id] = subscription.position if current is None else min(current, subscription.position)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        else:
            # The read in progress started without this stream: restart it with
            # it now, or the stream's first events would wait for its timeout.
            self._log.interrupt()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._subscriptions.get(subscription.task_id, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)
        if not subscriptions:
            self._subscriptions.pop(subscription.task_id, None)
            self._cursors.pop(subscription.task_id, None)

    async def _read_forever(self) -> None:
        while self._subscriptions:
            started_from = dict(self._cursors)
            try:
                batch = await self._log.read_after(started_from, READ_TIMEOUT_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream hub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            self._deliver(started_from, batch)

    def _deliver(
        self, started_from: dict[uuid.UUID, Cursor], batch: list[tuple[uuid.UUID, Cursor, StoredEvent]]
    ) -> None:
        newest: dict[uuid.UUID, Cursor] = {}
        for task_id, cursor, event in batch:
            start = started_from.get(task_id)
            if start is None:
                continue
            for subscription in self._subscriptions.get(task_id, []):
                if subscription.position >= start and cursor > subscription.position:
                    subscription.position = cursor
                    subscription.queue.put_nowait(event)
            newest[task_id] = cursor
        for task_id, cursor in newest.items():
            # Advance only if no subscription lowered the cursor during the read.
            if self._cursors.get(task_id) == started_from.get(task_id):
                self._cursors[task_id] = cursor


_hubs: dict[int, StreamHub] = {}


def hub() -> StreamHub:
    """This event loop's hub (the server has one loop; tests may have several)."""
    loop_id = id(asyncio.get_running_loop())
    instance = _hubs.get(loop_id)
    if instance is None:
        instance = _hubs[loop_id] = StreamHub(stream_log())
    return instance
