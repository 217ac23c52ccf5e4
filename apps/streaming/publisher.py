"""Worker side: coalesce one task attempt's chunks and append them to its log.

A chunk that arrives when nothing was sent for a whole window goes out at
once (a slow model's tokens are not delayed); chunks arriving faster are
joined and flushed once per window by one flusher thread per process, so the
cost per token stays low at high rates.

Flushes are submitted to the log (``StreamLog.submit``), so the thread that
generates does not wait for the write; a failed write surfaces at the
stream's next ``add`` or at ``close``, which waits for every write.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future

from django.conf import settings

from apps.security.crypto import TenantCipher
from apps.streaming.events import CHUNK, RESTART, seal
from apps.streaming.log import StreamLog

logger = logging.getLogger(__name__)


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
        self._writes: deque[Future] = deque()  # submitted to the log, oldest first
        self._failed = False  # a write failed and add() has raised it

    def begin_attempt(self, attempt: int) -> None:
        if attempt > 1:
            self._log.append(
                self.task_id, [seal(self._cipher, RESTART, 0, {"attempt": attempt})], self.attempt
            )

    def add(self, text: str) -> None:
        if not text:
            return
        now = time.monotonic()
        with self._lock:
            self._raise_failed_write_locked()
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
        """Send what is buffered and wait until it is written; call before the task's end is recorded."""
        _flusher.forget(self)
        with self._lock:
            if self._pending and not self._failed:
                self._flush_locked(time.monotonic())
            writes, self._writes = self._writes, deque()
            already_raised = self._failed
        for written in writes:
            try:
                written.result()
            except Exception:
                if not already_raised:  # add() raised it already: the attempt has failed
                    raise

    def _flush_locked(self, now: float) -> None:
        self._seq += 1
        text = "".join(self._pending)
        self._pending.clear()
        self._last_flush = now
        event = seal(self._cipher, CHUNK, self._seq, {"text": text})
        self._writes.append(self._log.submit(self.task_id, [event], stream=self, attempt=self.attempt))

    def _raise_failed_write_locked(self) -> None:
        while self._writes and self._writes[0].done():
            error = self._writes.popleft().exception()
            if error is not None:
                self._failed = True
                raise error


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
