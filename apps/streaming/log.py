"""Where stream events live between the worker that makes them and the
servers that send them: the database (embedded mode) or Redis Streams
(distributed mode, chosen by measurement: pipelined XADD is ~40x the rate of
channels_redis's layer here, and the stream doubles as the replay log).

Both backends give each event a cursor, a pair that orders events within a
task; readers ask for "everything after these cursors".
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.streaming.events import CHUNK, StoredEvent

Cursor = tuple[int, int]
ORIGIN: Cursor = (0, 0)


class StreamLog(Protocol):
    def append(self, task_id: uuid.UUID, events: list[StoredEvent]) -> None: ...
    def last_seq(self, task_id: uuid.UUID) -> int: ...
    def purge(self, task_id: uuid.UUID) -> None: ...
    async def read_all(self, task_id: uuid.UUID) -> list[tuple[Cursor, StoredEvent]]: ...
    async def read_after(
        self, cursors: dict[uuid.UUID, Cursor], timeout: float
    ) -> list[tuple[uuid.UUID, Cursor, StoredEvent]]: ...


class DatabaseStreamLog:
    """Rows in apps.streaming.models.StreamEvent; readers poll (embedded mode)."""

    POLL_SECONDS = 0.05

    def append(self, task_id: uuid.UUID, events: list[StoredEvent]) -> None:
        from apps.streaming.models import StreamEvent

        StreamEvent.objects.bulk_create(
            [StreamEvent(task_id=task_id, kind=e.kind, seq=e.seq, payload=e.payload) for e in events]
        )

    def last_seq(self, task_id: uuid.UUID) -> int:
        from django.db.models import Max

        from apps.streaming.models import StreamEvent

        return StreamEvent.objects.filter(task_id=task_id, kind=CHUNK).aggregate(m=Max("seq"))["m"] or 0

    def purge(self, task_id: uuid.UUID) -> None:
        from apps.streaming.models import StreamEvent

        StreamEvent.objects.filter(task_id=task_id).delete()

    def _rows_after(self, cursors: dict[uuid.UUID, Cursor]) -> list[tuple[uuid.UUID, Cursor, StoredEvent]]:
        from apps.streaming.models import StreamEvent

        if not cursors:
            return []
        lowest = min(cursor[0] for cursor in cursors.values())
        rows = (
            StreamEvent.objects.filter(task_id__in=list(cursors), id__gt=lowest)
            .order_by("id")
            .values_list("id", "task_id", "kind", "seq", "payload")
        )
        return [
            (task_id, (row_id, 0), StoredEvent(kind, seq, bytes(payload)))
            for row_id, task_id, kind, seq, payload in rows
            if row_id > cursors[task_id][0]
        ]

    async def read_all(self, task_id: uuid.UUID) -> list[tuple[Cursor, StoredEvent]]:
        rows = await sync_to_async(self._rows_after)({task_id: ORIGIN})
        return [(cursor, event) for _, cursor, event in rows]

    async def read_after(self, cursors, timeout):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            rows = await sync_to_async(self._rows_after)(cursors)
            if rows or asyncio.get_running_loop().time() >= deadline:
                return rows
            await asyncio.sleep(self.POLL_SECONDS)


class RedisStreamLog:
    """One Redis Stream per task, kept STREAM_TTL_SECONDS after its last event."""

    def __init__(self, url: str, prefix: str, ttl_seconds: int) -> None:
        import redis

        self._url = url
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._sync = redis.Redis.from_url(url)
        self._async_clients: dict[int, object] = {}

    def _key(self, task_id: uuid.UUID | str) -> str:
        return f"{self._prefix}:stream:{task_id}"

    def _async(self):
        # One client per event loop: redis.asyncio connections belong to the loop that made them.
        import redis.asyncio

        loop_id = id(asyncio.get_running_loop())
        client = self._async_clients.get(loop_id)
        if client is None:
            client = redis.asyncio.Redis.from_url(self._url)
            self._async_clients[loop_id] = client
        return client

    def append(self, task_id: uuid.UUID, events: list[StoredEvent]) -> None:
        key = self._key(task_id)
        pipe = self._sync.pipeline(transaction=False)
        for event in events:
            pipe.xadd(key, {"k": event.kind, "s": event.seq, "p": event.payload})
        pipe.expire(key, self._ttl)
        pipe.execute()

    def last_seq(self, task_id: uuid.UUID) -> int:
        for _, fields in self._sync.xrevrange(self._key(task_id), count=1000):
            if fields[b"k"].decode() == CHUNK:
                return int(fields[b"s"])
        return 0

    def purge(self, task_id: uuid.UUID) -> None:
        self._sync.delete(self._key(task_id))

    @staticmethod
    def _decode(entry_id: bytes, fields: dict[bytes, bytes]) -> tuple[Cursor, StoredEvent]:
        ms, _, n = entry_id.decode().partition("-")
        return (int(ms), int(n)), StoredEvent(fields[b"k"].decode(), int(fields[b"s"]), fields[b"p"])

    async def read_all(self, task_id: uuid.UUID) -> list[tuple[Cursor, StoredEvent]]:
        entries = await self._async().xrange(self._key(task_id))
        return [self._decode(entry_id, fields) for entry_id, fields in entries]

    async def read_after(self, cursors, timeout):
        if not cursors:
            await asyncio.sleep(timeout)
            return []
        streams = {self._key(task_id): f"{c[0]}-{c[1]}" for task_id, c in cursors.items()}
        reply = await self._async().xread(streams, count=500, block=max(1, int(timeout * 1000)))
        out = []
        for key, entries in reply or []:
            task_id = uuid.UUID(key.decode().rsplit(":", 1)[1])
            for entry_id, fields in entries:
                cursor, event = self._decode(entry_id, fields)
                out.append((task_id, cursor, event))
        return out


_log: StreamLog | None = None


def stream_log() -> StreamLog:
    global _log
    if _log is None:
        if settings.REDIS_URL:
            _log = RedisStreamLog(settings.REDIS_URL, settings.HUEY_NAME, settings.STREAM_TTL_SECONDS)
        else:
            _log = DatabaseStreamLog()
    return _log
