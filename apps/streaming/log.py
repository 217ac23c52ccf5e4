"""Where stream events live between the worker that makes them and the
servers that send them: the database (embedded mode) or Redis Streams
(distributed mode, chosen by measurement: pipelined XADD is ~40x the rate of
channels_redis's layer here, and the stream doubles as the replay log).

Both backends give each event a cursor, a pair that orders events within a
task; readers ask for "everything after these cursors".

Writers either ``append`` (written when it returns) or ``submit`` (written
soon, in order; the returned future says when, or why not). Redis batches
submitted events from all of a process's streams into one round trip
(docs/benchmarks.md, "Streaming relay", has the figures); the database
writes at once, in the caller's transaction.

Readers are woken by the writes, never by a timer: the Redis log names the
streams it wrote on a pub/sub channel in the same round trip as the write;
the database log wakes the ``stream-news`` channel of apps.core.notify with
the task's id once the rows are committed. Both still read every watched
stream every SWEEP_SECONDS, for a notice lost on the way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, cast
from weakref import WeakSet

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from apps.core import notify
from apps.core.fields import column_of, concrete_field
from apps.core.rows import reader
from apps.security.crypto import TenantCipher
from apps.streaming.events import CHUNK, StoredEvent
from apps.streaming.models import StreamEvent
from apps.tasks.fencing import StaleAttempt
from apps.tasks.models import Task, TaskState

logger = logging.getLogger(__name__)

Cursor = tuple[int, int]
ORIGIN: Cursor = (0, 0)

# apps.core.notify channel of the database log: events of a task were committed; payload: its id.
STREAM_NEWS_CHANNEL = "stream-news"
# Watched streams are all read this often even without news: a notice lost
# on the way delays a stream, never loses an event.
SWEEP_SECONDS = 1.0


class StreamLog(Protocol):
    """``attempt``: the writing attempt's number, its fencing token (apps.tasks.fencing):
    the write is refused with StaleAttempt once a newer attempt began (``fence``) or,
    in the database log, once the task is no longer running that attempt. None: unfenced
    (the end of a task, written once its end is recorded)."""

    def append(self, task_id: uuid.UUID, events: list[StoredEvent], attempt: int | None = None) -> None: ...
    def submit(
        self, task_id: uuid.UUID, events: list[StoredEvent], stream: Hashable, attempt: int | None = None
    ) -> Future: ...
    def fence(self, task_id: uuid.UUID, attempt: int) -> None:
        """Attempt ``attempt`` begins: refuse the writes of earlier attempts from now on."""
    def last_seq(self, task_id: uuid.UUID) -> int: ...
    def purge(self, task_id: uuid.UUID) -> None: ...
    async def read_all(self, task_id: uuid.UUID) -> list[tuple[Cursor, StoredEvent]]: ...
    async def read_after(
        self, cursors: dict[uuid.UUID, Cursor], timeout: float
    ) -> list[tuple[uuid.UUID, Cursor, StoredEvent]]: ...

    def interrupt(self) -> None:
        """Make this event loop's ``read_after`` in progress (or its next) return now:
        the caller has new cursors to read with (a stream just subscribed)."""


_EVENT_COLUMNS = ("task_id", "kind", "seq", "payload", "created_at")


@functools.cache
def _event_fields() -> tuple[Field[Any, Any], ...]:
    """StreamEvent's fields in _EVENT_COLUMNS' order (looked up once)."""
    return tuple(concrete_field(StreamEvent, name) for name in _EVENT_COLUMNS)


@functools.cache
def _insert_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    columns = ", ".join(q(column_of(StreamEvent, name)) for name in _EVENT_COLUMNS)
    values = ", ".join(["%s"] * len(_EVENT_COLUMNS))
    return f"INSERT INTO {q(StreamEvent._meta.db_table)} ({columns}) VALUES ({values})"


@functools.cache
def _fenced_insert_sql(vendor: str) -> str:
    """The insert, only while the task runs the writing attempt (one statement: no race
    with a claim between a check and the write)."""
    q = connection.ops.quote_name
    columns = ", ".join(q(column_of(StreamEvent, name)) for name in _EVENT_COLUMNS)
    values = ", ".join(["%s"] * len(_EVENT_COLUMNS))
    task = q(Task._meta.db_table)
    return (
        f"INSERT INTO {q(StreamEvent._meta.db_table)} ({columns}) SELECT {values} WHERE EXISTS ("
        f"SELECT 1 FROM {task} WHERE {q(column_of(Task, 'id'))} = %s AND {q(column_of(Task, 'state'))} = %s "
        f"AND {q(column_of(Task, 'attempt'))} = %s)"
    )


@functools.cache
def _select_after_sql(vendor: str, count: int) -> str:
    q = connection.ops.quote_name
    id_, task_id = q(column_of(StreamEvent, "id")), q(column_of(StreamEvent, "task_id"))
    columns = ", ".join(q(column_of(StreamEvent, name)) for name in ("id", "task_id", "kind", "seq", "payload"))
    return (
        f"SELECT {columns} FROM {q(StreamEvent._meta.db_table)} "
        f"WHERE {task_id} IN ({', '.join(['%s'] * count)}) AND {id_} > %s ORDER BY {id_}"
    )


@dataclass(eq=False)
class _DatabaseReader:
    """What one event loop's reader of the database log knows between reads."""

    loop: asyncio.AbstractEventLoop
    wakeups: notify.Subscription
    watched: set[uuid.UUID] = field(default_factory=set)
    stale: bool = True  # a watched stream may have unread rows
    next_sweep: float = 0.0
    interrupted: bool = False


class DatabaseStreamLog:
    """Rows in apps.streaming.models.StreamEvent (embedded mode); a commit wakes the readers."""

    def __init__(self) -> None:
        self._readers: dict[int, _DatabaseReader] = {}

    def append(self, task_id: uuid.UUID, events: list[StoredEvent], attempt: int | None = None) -> None:
        # Through a cursor, with no transaction of its own (bulk_create opens one:
        # BEGIN and COMMIT around each chunk): one statement per event, written
        # once the caller's transaction (if any) commits.
        task_field, kind_field, seq_field, payload_field, created_field = _event_fields()
        # The same task and time on every row: prepared once.
        task_value = task_field.get_db_prep_save(task_id, connection)
        created = created_field.get_db_prep_save(timezone.now(), connection)
        rows = [
            [
                task_value, kind_field.get_db_prep_save(event.kind, connection),
                seq_field.get_db_prep_save(event.seq, connection),
                payload_field.get_db_prep_save(event.payload, connection), created,
            ]
            for event in events
        ]
        with connection.cursor() as cursor:
            if attempt is None:
                cursor.executemany(_insert_sql(connection.vendor), rows)
            else:
                fence = [task_value, TaskState.RUNNING, attempt]
                for row in rows:
                    cursor.execute(_fenced_insert_sql(connection.vendor), [*row, *fence])
                    if cursor.rowcount != 1:
                        raise StaleAttempt(task_id, attempt)
        # Once committed (at once outside a transaction): a reader woken earlier would not see the rows.
        transaction.on_commit(partial(notify.wake, STREAM_NEWS_CHANNEL, str(task_id)), robust=True)

    def submit(
        self, task_id: uuid.UUID, events: list[StoredEvent], stream: Hashable, attempt: int | None = None
    ) -> Future:
        # At once, in the caller's thread: its database connection and transaction are the
        # ones a writer thread would not see (and SQLite would lock it out of).
        written: Future = Future()
        try:
            self.append(task_id, events, attempt)
        except StaleAttempt as refused:
            written.set_exception(refused)
        else:
            written.set_result(None)
        return written

    def fence(self, task_id: uuid.UUID, attempt: int) -> None:
        pass  # each write checks the task's row itself

    def last_seq(self, task_id: uuid.UUID) -> int:
        from django.db.models import Max

        return StreamEvent.objects.filter(task_id=task_id, kind=CHUNK).aggregate(m=Max("seq"))["m"] or 0

    def purge(self, task_id: uuid.UUID) -> None:
        StreamEvent.objects.filter(task_id=task_id).delete()

    def _rows_after(self, cursors: dict[uuid.UUID, Cursor]) -> list[tuple[uuid.UUID, Cursor, StoredEvent]]:
        if not cursors:
            return []
        lowest = min(cursor[0] for cursor in cursors.values())
        # Through a cursor: every chunk of every stream is read here, and the ORM
        # would compile the same query each time (about 1 ms of CPU; this, a tenth).
        ids = list(cursors)
        task_field = concrete_field(StreamEvent, "task_id")
        read_task_id = reader(StreamEvent, "task_id", connection)
        found: list[tuple[uuid.UUID, Cursor, StoredEvent]] = []
        for start in range(0, len(ids), 500):  # one statement's parameters are bounded (SQLite: 32,766)
            part = ids[start:start + 500]
            params = [task_field.get_db_prep_value(task_id, connection) for task_id in part]
            with connection.cursor() as cursor:
                cursor.execute(_select_after_sql(connection.vendor, len(part)), [*params, lowest])
                rows = cursor.fetchall()
            for row_id, raw_task_id, kind, seq, payload in rows:
                task_id = read_task_id(raw_task_id)
                if row_id > cursors[task_id][0]:
                    found.append((task_id, (row_id, 0), StoredEvent(kind, seq, bytes(payload))))
        found.sort(key=lambda item: item[1])
        return found

    async def read_all(self, task_id: uuid.UUID) -> list[tuple[Cursor, StoredEvent]]:
        rows = await sync_to_async(self._rows_after, thread_sensitive=False)({task_id: ORIGIN})
        return [(cursor, event) for _, cursor, event in rows]

    async def read_after(self, cursors, timeout):
        reader = self._reader()
        loop = reader.loop
        deadline = loop.time() + timeout
        if cursors.keys() - reader.watched:
            reader.stale = True  # newly watched: rows may be there already
        reader.watched = set(cursors)
        names = [str(task_id) for task_id in cursors]
        while True:
            if reader.interrupted:
                reader.interrupted = False
                return []
            now = loop.time()
            if reader.stale or now >= reader.next_sweep:
                # Cleared before reading: news arriving meanwhile marks it again.
                reader.stale = False
                reader.next_sweep = now + SWEEP_SECONDS
                # Not thread-sensitive: the reader must not queue behind HTTP views
                # on the server's one sync thread.
                rows = await sync_to_async(self._rows_after, thread_sensitive=False)(cursors)
                if rows:
                    return rows
                continue  # (news that came during the read is looked at first)
            if now >= deadline:
                return []
            woken = await reader.wakeups.wait_async(min(deadline, reader.next_sweep) - now)
            if woken is not None and woken.concerns(names):
                reader.stale = True

    def interrupt(self) -> None:
        reader = self._reader()
        reader.interrupted = True
        reader.wakeups.poke()

    def _reader(self) -> _DatabaseReader:
        loop = asyncio.get_running_loop()
        reader = self._readers.get(id(loop))
        if reader is None or reader.loop is not loop:  # (an id is reused once its loop is gone)
            if reader is not None:
                reader.wakeups.close()
            # Subscribed before the first read: news committed after it is not missed.
            reader = self._readers[id(loop)] = _DatabaseReader(loop, notify.subscribe(STREAM_NEWS_CHANNEL))
        return reader


# Connections one process opens to Redis for the stream log: callers beyond
# that wait for one instead of failing (redis-py's default pool raises past
# 100, and a worker runs a thread per slot).
POOL_SIZE = 50
POOL_WAIT_SECONDS = 30.0
# Entries read per stream per XREAD; a stream that fills it is read again at once.
READ_COUNT = 500
# A listener nobody has read through for this long stops (the next read restarts it).
LISTENER_IDLE_SECONDS = 10.0
# Reads of announced streams are at least this far apart. An XREAD costs
# ~0.3 ms of CPU however little it returns (~35 us more per entry, redis-py
# without hiredis, measured here), so under load, waiting this long lets one
# read carry many writers' news; at low load the gap has long passed.
MIN_READ_GAP_SECONDS = 0.002


class _BatchWriter:
    """One daemon thread writing what other threads submit: everything waiting goes in one call.

    Threads that generate (a worker's slots, one per stream) never wait on
    the store, and under load one round trip carries many streams' events,
    so the cost per event falls as the load rises. Items are written in the
    order submitted. Once an item of a ``stream`` fails, that stream's later
    items fail too, unwritten: the log never gets a gap, as when each
    write was made, and failed, in the caller's thread.
    """

    MAX_ITEMS = 500  # per call: one call's latency stays bounded under a burst

    def __init__(self, write: Callable[[list], list[BaseException | None]], name: str) -> None:
        self._write = write  # items -> an error or None for each
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: list[tuple[object, Hashable, Future]] = []
        self._broken: WeakSet = WeakSet()
        self._thread: threading.Thread | None = None

    def submit(self, item: object, stream: Hashable) -> Future:
        written: Future = Future()
        with self._lock:
            self._pending.append((item, stream, written))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._wake.set()
        return written

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                pending, self._pending = self._pending, []
            for start in range(0, len(pending), self.MAX_ITEMS):
                self._write_part(pending[start:start + self.MAX_ITEMS])

    def _write_part(self, part: list[tuple[object, Hashable, Future]]) -> None:
        todo = [entry for entry in part if not self._refused(*entry)]
        try:
            errors = self._write([item for item, _, _ in todo]) if todo else []
        except Exception as exc:  # the store is unreachable: every item failed
            errors = [exc] * len(todo)
        for (_, stream, written), error in zip(todo, errors, strict=True):  # one answer per item written
            if error is None:
                written.set_result(None)
            else:
                self._broken.add(stream)
                written.set_exception(error)

    def _refused(self, item: object, stream: Hashable, written: Future) -> bool:
        if stream in self._broken:
            written.set_exception(RuntimeError("an earlier write of this stream failed"))
            return True
        return False


@dataclass(eq=False)
class _Doorbell:
    """What one event loop's reader knows from the writers' notices."""

    loop: asyncio.AbstractEventLoop
    watched: set[uuid.UUID] = field(default_factory=set)
    news: set[uuid.UUID] = field(default_factory=set)  # watched streams with events not yet read
    rung: asyncio.Event = field(default_factory=asyncio.Event)
    listening: bool = False
    next_sweep: float = 0.0
    last_used: float = 0.0
    last_read: float = 0.0
    listener: asyncio.Task | None = None
    interrupted: bool = False  # StreamLog.interrupt: return from the read in progress


# The fencing of the Redis log (apps.tasks.fencing). A task's fence key holds the
# newest attempt that began; an older attempt's entries are refused with STALE_REPLY.
STALE_REPLY = "STALE attempt"
# KEYS: the stream, its fence; ARGV: the writing attempt, then kind, seq, payload of each entry.
_FENCED_ADD = """
local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < fence then
  return redis.error_reply('STALE attempt ' .. ARGV[1] .. ', the task is on attempt ' .. fence)
end
for i = 2, #ARGV, 3 do
  redis.call('XADD', KEYS[1], '*', 'k', ARGV[i], 's', ARGV[i + 1], 'p', ARGV[i + 2])
end
return (#ARGV - 1) / 3
"""
# KEYS: the fence; ARGV: the attempt beginning, the key's lifetime (the stream's).
_RAISE_FENCE = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisStreamLog:
    """One Redis Stream per task, kept STREAM_TTL_SECONDS after its last event.

    Each write also names the streams it touched on one pub/sub channel, and
    a server reads only the streams named: one XREAD over every watched
    stream costs time in proportion to their number (~8 ms for 1,000 here),
    and a busy server reads hundreds of times a second. The notices are
    hints; the streams stay the truth (see SWEEP_SECONDS).
    """

    def __init__(self, url: str, prefix: str, ttl_seconds: int) -> None:
        import redis

        self._url = url
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._channel = f"{prefix}:stream-news"
        self._sync = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS, **settings.REDIS_CLIENT_OPTIONS
            )
        )
        self._writer = _BatchWriter(self._write, name="stream-writer")
        self._async_clients: dict[int, tuple[asyncio.AbstractEventLoop, object]] = {}
        self._doorbells: dict[int, _Doorbell] = {}

    def _key(self, task_id: uuid.UUID | str) -> str:
        return f"{self._prefix}:stream:{task_id}"

    def _fence_key(self, task_id: uuid.UUID | str) -> str:
        """The newest attempt that began writing the task's stream (see ``fence``)."""
        return f"{self._prefix}:stream-attempt:{task_id}"

    def _async(self):
        # One client per event loop: redis.asyncio connections belong to the loop that made them.
        import redis.asyncio

        loop = asyncio.get_running_loop()
        known = self._async_clients.get(id(loop))
        if known is None or known[0] is not loop:  # (an id is reused once its loop is gone)
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self._url, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS, **settings.REDIS_CLIENT_OPTIONS
            )
            known = self._async_clients[id(loop)] = (loop, redis.asyncio.Redis(connection_pool=pool))
        return known[1]

    # --- writing ------------------------------------------------------------------------

    def _write(
        self, batch: list[tuple[uuid.UUID, list[StoredEvent], int | None]]
    ) -> list[BaseException | None]:
        """One round trip for the whole batch; an error or None for each item."""
        pipe = self._sync.pipeline(transaction=False)
        touched: dict[str, str] = {}
        replies_of: list[int] = []  # how many replies each item has
        for task_id, events, attempt in batch:
            key = self._key(task_id)
            if attempt is None:
                for event in events:
                    pipe.xadd(key, {"k": event.kind, "s": event.seq, "p": event.payload})
                replies_of.append(len(events))
            else:  # one script: the fence check and the entries, atomically
                fields = [value for event in events for value in (event.kind, event.seq, event.payload)]
                # EVAL, not EVALSHA through a registered script: redis-py's pipeline would
                # ask SCRIPT EXISTS before every batch, a second round trip on the hot path.
                pipe.eval(_FENCED_ADD, 2, key, self._fence_key(task_id), attempt, *fields)
                replies_of.append(1)
            touched[key] = str(task_id)
        for key in touched:
            pipe.expire(key, self._ttl)
        pipe.publish(self._channel, " ".join(touched.values()))
        replies = iter(pipe.execute(raise_on_error=False))
        errors: list[BaseException | None] = []
        for (task_id, _, attempt), count in zip(batch, replies_of, strict=True):
            failed = [reply for reply in (next(replies) for _ in range(count)) if isinstance(reply, Exception)]
            error = failed[0] if failed else None
            if attempt is not None and error is not None and STALE_REPLY in str(error):
                error = StaleAttempt(task_id, attempt)
            errors.append(error)
        trailing = [reply for reply in replies if isinstance(reply, Exception)]
        if trailing:  # an expiry or the notice: the events are in; log it and go on
            logger.warning("stream log: %s", trailing[0])
        return errors

    def append(self, task_id: uuid.UUID, events: list[StoredEvent], attempt: int | None = None) -> None:
        error = self._write([(task_id, events, attempt)])[0]
        if error is not None:
            raise error

    def submit(
        self, task_id: uuid.UUID, events: list[StoredEvent], stream: Hashable, attempt: int | None = None
    ) -> Future:
        return self._writer.submit((task_id, events, attempt), stream)

    def fence(self, task_id: uuid.UUID, attempt: int) -> None:
        if attempt <= 1:
            # A first attempt has no earlier one to refuse (attempts count from 1, and a
            # missing fence reads as 0): the round trip would change nothing.
            return
        self._sync.eval(_RAISE_FENCE, 1, self._fence_key(task_id), attempt, self._ttl)

    def last_seq(self, task_id: uuid.UUID) -> int:
        entries = self._sync.xrevrange(self._key(task_id), count=1000)
        for entry_id, fields in entries or []:  # a stream that does not exist answers [] too
            # redis-py annotates a reply for both decode_responses modes at once (str or
            # bytes, entries that may be None); this client's replies are all bytes.
            _, event = self._decode(entry_id, fields)  # type: ignore[arg-type]
            if event.kind == CHUNK:
                return event.seq
        return 0

    def purge(self, task_id: uuid.UUID) -> None:
        self._sync.delete(self._key(task_id), self._fence_key(task_id))

    def reencrypt(self, task_id: uuid.UUID, cipher: TenantCipher) -> int:
        """Rewrite the task's stream with every payload not under the tenant's primary
        key re-encrypted (apps.tenants.data_keys); returns how many were rewritten.

        Stream entries cannot be changed in place: the stream is deleted and
        written again in one MULTI, each entry under its own id, so a reader's
        cursor stays valid and nothing is read twice. WATCH makes it
        conditional: an event appended meanwhile aborts it, and it is redone.
        """
        import redis

        key = self._key(task_id)
        with self._sync.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    # (This client's replies are all bytes: see last_seq.)
                    entries = cast(list[tuple[bytes, dict[Any, Any]]], pipe.xrange(key))
                    stale = {entry_id for entry_id, fields in entries if not cipher.is_current(fields[b"p"])}
                    if not stale:
                        return 0
                    ttl_ms = pipe.pttl(key)
                    pipe.multi()
                    pipe.delete(key)
                    for entry_id, fields in entries:
                        if entry_id in stale:
                            fields = {**fields, b"p": cipher.reencrypt(fields[b"p"])}
                        pipe.xadd(key, fields, id=entry_id)
                    if ttl_ms > 0:
                        pipe.pexpire(key, ttl_ms)
                    pipe.execute()
                    return len(stale)
                except redis.WatchError:
                    continue

    # --- reading ------------------------------------------------------------------------

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
        bell = self._doorbell()
        loop = bell.loop
        deadline = loop.time() + timeout
        if cursors.keys() != bell.watched:
            # Newly watched streams: whatever was announced before is unknown.
            bell.news.update(cursors.keys() - bell.watched)
            bell.watched = set(cursors)
        while True:
            if bell.interrupted:
                bell.interrupted = False
                return []
            now = bell.last_used = loop.time()
            if not bell.listening:
                # No notices (starting, or the subscription was lost): read every stream, waiting.
                events, _ = await self._xread(cursors, block=max(0.001, deadline - now))
                return events
            if now >= bell.next_sweep:
                bell.next_sweep = now + SWEEP_SECONDS
                bell.news.update(cursors)
            if bell.news and now < bell.last_read + MIN_READ_GAP_SECONDS:
                await asyncio.sleep(bell.last_read + MIN_READ_GAP_SECONDS - now)
                continue  # with the news that came meanwhile
            wanted = {task_id: cursors[task_id] for task_id in bell.news if task_id in cursors}
            # Cleared before reading: a notice arriving meanwhile marks its stream again.
            bell.news.clear()
            if wanted:
                events, full = await self._xread(wanted, block=None)
                bell.last_read = loop.time()
                bell.news.update(full)
                if events:
                    return events
                continue
            if now >= deadline:
                return []
            bell.rung.clear()  # no await since news was looked at: no notice can slip between
            try:
                await asyncio.wait_for(bell.rung.wait(), min(deadline, bell.next_sweep) - now)
            except TimeoutError:
                pass

    async def _xread(
        self, cursors: dict[uuid.UUID, Cursor], block: float | None
    ) -> tuple[list[tuple[uuid.UUID, Cursor, StoredEvent]], set[uuid.UUID]]:
        """(events after ``cursors``, the streams that may hold more)."""
        streams = {self._key(task_id): f"{c[0]}-{c[1]}" for task_id, c in cursors.items()}
        # block: at least 1 ms, as BLOCK 0 would wait forever.
        reply = await self._async().xread(
            streams, count=READ_COUNT, block=None if block is None else max(1, int(block * 1000))
        )
        out = []
        full = set()
        for key, entries in reply or []:
            task_id = uuid.UUID(key.decode().rsplit(":", 1)[1])
            for entry_id, fields in entries:
                cursor, event = self._decode(entry_id, fields)
                out.append((task_id, cursor, event))
            if len(entries) >= READ_COUNT:
                full.add(task_id)
        return out, full

    def interrupt(self) -> None:
        bell = self._doorbell()
        bell.interrupted = True
        bell.rung.set()

    def _doorbell(self) -> _Doorbell:
        loop = asyncio.get_running_loop()
        bell = self._doorbells.get(id(loop))
        if bell is None or bell.loop is not loop:
            bell = self._doorbells[id(loop)] = _Doorbell(loop)
        if bell.listener is None or bell.listener.done():
            bell.last_used = loop.time()
            bell.listener = loop.create_task(self._listen(bell))
        return bell

    async def _listen(self, bell: _Doorbell) -> None:
        """Mark the watched streams that writers name as having news, until idle."""
        while bell.loop.time() - bell.last_used < LISTENER_IDLE_SECONDS:
            pubsub = self._async().pubsub()
            try:
                await pubsub.subscribe(self._channel)
                # Listening only once Redis confirms: a notice sent before that is not seen.
                while await pubsub.get_message(timeout=POOL_WAIT_SECONDS) is None:
                    pass
                bell.listening = True
                bell.news.update(bell.watched)  # what was announced while not listening is unknown
                bell.rung.set()
                while bell.loop.time() - bell.last_used < LISTENER_IDLE_SECONDS:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    for name in message["data"].split():
                        task_id = uuid.UUID(name.decode())
                        if task_id in bell.watched:
                            bell.news.add(task_id)
                    bell.rung.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("stream notices lost; reading every stream until resubscribed", exc_info=True)
                bell.listening = False
                await asyncio.sleep(0.5)
            finally:
                bell.listening = False
                await pubsub.aclose()


_log: StreamLog | None = None


def stream_log() -> StreamLog:
    global _log
    if _log is None:
        if settings.REDIS_URL:
            _log = RedisStreamLog(settings.REDIS_URL, settings.HUEY_NAME, settings.STREAM_TTL_SECONDS)
        else:
            _log = DatabaseStreamLog()
    return _log
