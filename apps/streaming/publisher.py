"""Worker side: coalesce one task attempt's chunks and append them to its log.

A chunk that arrives when nothing was sent for a whole window goes out at
once (a slow model's tokens are not delayed); chunks arriving faster are
joined and flushed once per window by one flusher thread per process, so the
cost per token stays low at high rates.

Flushes are submitted to the log (``StreamLog.submit``), so the thread that
generates does not wait for the write; a failed write surfaces at the
stream's next ``add`` or at ``close``, which waits for every write.

A log that is down (Redis away: a connection refused or timed out) does not
stop the generation: the events it could not take are kept, in order and up
to UNWRITTEN_LIMIT_BYTES, and written again at a later ``add`` (backing off
from RETRY_FIRST_SECONDS to RETRY_MAX_SECONDS) and once more at ``close``.
If the log is still down then, or the kept events outgrow the limit, the
stream goes without them: the result is recorded in the database all the
same, and the stream's readers take its end from there
(apps.streaming.consumers). A refusal of the attempt (StaleAttempt: a newer
attempt owns the task) still stops it, as does any other failed write.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, wait
from typing import Any

from django.conf import settings

from apps.core.errors import unavailable_dependency
from apps.security.crypto import TenantCipher
from apps.streaming.events import CHUNK, RESTART, StoredEvent, seal
from apps.streaming.log import StreamLog
from apps.tasks.fencing import StaleAttempt

logger = logging.getLogger(__name__)

# Events of one stream kept while the log is down (their ciphertext's bytes); past it,
# the stream goes without them rather than the worker's memory without bound.
UNWRITTEN_LIMIT_BYTES = 1 << 20
RETRY_FIRST_SECONDS = 0.25
RETRY_MAX_SECONDS = 5.0


class _Run:
    """The ``stream`` key of a run of writes. After a failed write the log refuses the
    rest of its run (apps.streaming.log._BatchWriter: no gap in the stream); a retry of
    the kept events starts a new run, once every write of the old one has answered."""

    __slots__ = ("__weakref__",)


class StreamPublisher:
    def __init__(
        self,
        task_id: uuid.UUID,
        cipher: TenantCipher,
        log: StreamLog,
        window: float,
        *,
        resume: bool = True,
        attempt: int | None = None,
    ) -> None:
        """``attempt``: the attempt that writes, its fencing token: the log refuses its writes
        (StaleAttempt, raised by ``add`` or ``close``) once a newer attempt began."""
        self.task_id = task_id
        self.attempt = attempt
        if attempt is not None:
            # Before the last seq is read: a stale attempt cannot add chunks after it.
            log.fence(task_id, attempt)
        self._cipher = cipher
        self._log = log
        self._window = window
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._pending_since = 0.0
        self._last_flush = 0.0
        # seq counts on across retries; a first attempt has no earlier chunks to count on from.
        self._seq = log.last_seq(task_id) if resume else 0
        # Submitted to the log, oldest first, with their events (kept again if the log is down).
        self._writes: deque[tuple[Future, list[StoredEvent]]] = deque()
        self._failed = False  # a write failed and add() has raised it
        self._run = _Run()
        self._run_broken = False  # a write of this run found the log down: the rest of it is refused
        # Not written because the log was down: the refused writes' events, then those made
        # since (never submitted: they wait behind the refused ones).
        self._returned: list[StoredEvent] = []
        self._held: list[StoredEvent] = []
        self._unwritten_bytes = 0
        self._log_down = False
        self._retry_at = 0.0  # monotonic time of the next try at the kept events
        self._retry_delay = RETRY_FIRST_SECONDS
        self._given_up = False  # too much kept: the stream goes without the rest of this attempt

    @property
    def unwritten(self) -> int:
        """How many events are kept, waiting for the log to take them."""
        with self._lock:
            return len(self._returned) + len(self._held)

    def begin_attempt(self, attempt: int) -> None:
        if attempt > 1:
            event = seal(self._cipher, RESTART, 0, {"attempt": attempt})
            try:
                self._log.append(self.task_id, [event], self.attempt)
            except Exception as exc:
                if unavailable_dependency(exc) is None:
                    raise  # StaleAttempt among them
                with self._lock:
                    self._log_down_locked(time.monotonic())
                    self._keep_locked(self._held, [event])

    def mark(self, kind: str, body: dict[str, Any]) -> None:
        """Append a status event (``suspended``, ``resumed``: apps.streaming.events) in
        order with the chunks: what is buffered goes first. Kept like chunks while the
        log is down."""
        with self._lock:
            if self._failed:
                return
            if self._pending:
                self._flush_locked(time.monotonic())
            self._send_locked([seal(self._cipher, kind, 0, body)])

    def add(self, text: str) -> None:
        if not text:
            return
        now = time.monotonic()
        with self._lock:
            self._collect_locked(now)
            if now >= self._retry_at:
                self._retry_locked(now)
            self._pending.append(text)
            if len(self._pending) == 1:
                self._pending_since = now
            if now - self._last_flush >= self._window:
                self._flush_locked(now)
                return
        _flusher.watch(self)

    def flush_if_due(self, now: float) -> None:
        with self._lock:
            if self._pending and not self._failed and now - self._pending_since >= self._window:
                self._flush_locked(now)

    def close(self) -> None:
        """Send what is buffered and wait until it is written; call before the task's end is recorded.

        Events the log could not take are tried once more, without waiting for the
        back-off; if the log is still down, the stream goes without them."""
        _flusher.forget(self)
        with self._lock:
            if self._pending and not self._failed:
                self._flush_locked(time.monotonic())
        self._wait_for_writes()
        with self._lock:
            if self._failed:  # add() raised it already: the attempt has failed
                self._writes.clear()
                return
            self._collect_locked(time.monotonic())
            self._retry_locked(time.monotonic())
        self._wait_for_writes()
        with self._lock:
            self._collect_locked(time.monotonic())
            if self._returned or self._held:
                logger.warning(
                    "stream log still down: %d events of task %s are left out of its stream "
                    "(its readers take the end from the database)",
                    len(self._returned) + len(self._held), self.task_id,
                )
                self._returned, self._held, self._unwritten_bytes = [], [], 0

    def _wait_for_writes(self) -> None:
        with self._lock:
            writes = [written for written, _ in self._writes]
        wait(writes)

    def _flush_locked(self, now: float) -> None:
        self._seq += 1
        text = "".join(self._pending)
        self._pending.clear()
        self._last_flush = now
        self._send_locked([seal(self._cipher, CHUNK, self._seq, {"text": text})])

    def _send_locked(self, events: list[StoredEvent]) -> None:
        if self._given_up:
            return
        if self._returned or self._held:
            self._keep_locked(self._held, events)  # behind the events the log has not taken yet
            return
        written = self._log.submit(self.task_id, events, stream=self._run, attempt=self.attempt)
        self._writes.append((written, events))

    def _collect_locked(self, now: float) -> None:
        """Take in the writes that answered, oldest first: keep the events of those the
        log refused for being down; raise any other refusal (StaleAttempt among them)."""
        while self._writes and self._writes[0][0].done():
            written, events = self._writes.popleft()
            error = written.exception()
            if error is None:
                if self._log_down:
                    self._log_down, self._retry_delay = False, RETRY_FIRST_SECONDS
                    logger.info("stream log back: the kept events of task %s are written", self.task_id)
                continue
            # The first refusal of a run says why; the rest of the run is refused after it.
            if isinstance(error, StaleAttempt) or not (self._run_broken or unavailable_dependency(error)):
                self._failed = True
                raise error
            if not self._run_broken:
                self._run_broken = True
                self._log_down_locked(now)
            self._keep_locked(self._returned, events)

    def _log_down_locked(self, now: float) -> None:
        """A write found the log down: the next try backs off further."""
        if not self._log_down:
            self._log_down = True
            logger.warning("stream log down: the events of task %s are kept and written again later", self.task_id)
        self._retry_at = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_SECONDS)

    def _keep_locked(self, into: list[StoredEvent], events: list[StoredEvent]) -> None:
        if self._given_up:
            return
        into.extend(events)
        self._unwritten_bytes += sum(len(event.payload) for event in events)
        if self._unwritten_bytes > UNWRITTEN_LIMIT_BYTES:
            logger.warning(
                "stream log down too long: task %s's stream goes without the rest of attempt %s "
                "(its result is recorded in the database all the same)", self.task_id, self.attempt,
            )
            self._given_up = True
            self._returned, self._held, self._unwritten_bytes = [], [], 0

    def _retry_locked(self, now: float) -> None:
        """Submit the kept events again, as one write of a new run, once the old run has
        answered in full (so they go in order)."""
        if self._writes or not (self._returned or self._held):
            return
        events = self._returned + self._held
        self._returned, self._held, self._unwritten_bytes = [], [], 0
        self._run, self._run_broken = _Run(), False
        self._send_locked(events)


class _Flusher:
    """One daemon thread per process that flushes publishers whose window has passed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._publishers: set[StreamPublisher] = set()
        self._thread: threading.Thread | None = None
        self._watching = threading.Event()  # set while some publisher may have chunks held back

    def watch(self, publisher: StreamPublisher) -> None:
        with self._lock:
            self._publishers.add(publisher)
            self._watching.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="stream-flusher", daemon=True)
                self._thread.start()

    def forget(self, publisher: StreamPublisher) -> None:
        with self._lock:
            self._publishers.discard(publisher)

    def _run(self) -> None:
        interval = settings.STREAM_COALESCE_SECONDS / 2
        while True:
            # An idle worker's flusher sleeps until a publisher holds chunks back,
            # instead of waking every half window for nothing.
            self._watching.wait()
            time.sleep(interval)
            with self._lock:
                publishers = list(self._publishers)
                if not publishers:
                    self._watching.clear()
            now = time.monotonic()
            for publisher in publishers:
                try:
                    publisher.flush_if_due(now)
                except Exception:  # a broken log must not kill the thread; the worker sees it on close
                    logger.exception("stream flush failed for task %s", publisher.task_id)


_flusher = _Flusher()
