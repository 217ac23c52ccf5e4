"""Wake-ups between processes: how the hot path pushes instead of polling.

A submission wakes the dispatcher, a dispatch wakes the workers of its queue,
a chunk wakes the servers streaming it, a cancel wakes the worker running the
task. All four go through this module, in both modes.

Contract
--------
A *channel* is a name (``"dispatcher"``, ``"queue:<queue name>"``,
``"task-cancel"``, ``"stream-news"``); the publisher of a channel defines its
name and its payload (apps.scheduler.wakeup, apps.tasks.services,
apps.streaming.log).

``wake(channel, payload="")``
    Every process that has a subscription to ``channel`` when this is called
    learns of it, with ``payload`` (a short string without newlines: a task
    id, or nothing). It never raises and never waits on a receiver: a
    wake-up that cannot be delivered is dropped (and logged).
``subscribe(*channels) -> Subscription``
    From the moment it returns, every wake-up on those channels is kept for
    the subscription until its next wait returns, so "look, then wait" never
    misses one sent in between.
``Subscription.wait(timeout) -> Wake | None``
    Returns at once if anything arrived since the last wait returned (or
    since subscribing), else waits up to ``timeout`` seconds; None when the
    time ran out. ``await Subscription.wait_async(timeout)`` is the same on
    an event loop. ``Wake.payloads`` holds the payloads received;
    ``Wake.complete`` is False when some may have been dropped (too many
    pending, the transport reconnected): then assume anything changed.
``Subscription.poke(payload="")``
    A wake-up from inside this process (another thread: "your state changed").
``Subscription.set_channels(channels)``, ``Subscription.close()``.

Delivery is best effort and at most once: the database stays the truth, and
every waiter keeps a slow tick as a safety net for a lost wake-up (a Redis
restart, a full pipe). A wake-up never carries data anyone must not lose;
a spurious one costs a look, never a wrong decision.

Transports
----------
Redis (``REDIS_URL`` set: processes on any number of hosts): ``wake`` is a
PUBLISH on ``{HUEY_NAME}:notify:{channel}``; each subscribing process holds one
pub/sub connection, read by one listener thread.

Named pipes (embedded mode: one host, no Redis): a subscribing process makes
one FIFO per channel in ``DATA_DIR/notify/<channel>/`` and reads it from one
listener thread; ``wake`` writes a line to every FIFO in that directory. A
pipe buffers 64 KiB (thousands of wake-ups) where a Unix datagram socket
queues only ``net.unix.max_dgram_qlen`` datagrams (10 here), which a busy
receiver overruns. A FIFO whose process died has no reader: opening or
writing it fails with ENXIO or EPIPE, and the waker removes it.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import hashlib
import logging
import os
import re
import secrets
import selectors
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# Payloads a subscription keeps between two waits; past this it keeps only
# "something happened" (Wake.complete False), so an unread one cannot grow.
MAX_PENDING_PAYLOADS = 10_000
# How long subscribe() waits for Redis to confirm a new channel before going on
# without it (the caller's tick then covers the gap).
SUBSCRIBE_CONFIRM_SECONDS = 5.0
# After a transport failure, the listener retries this often.
RETRY_SECONDS = 0.5
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.@:-]")


@dataclass(frozen=True)
class Wake:
    """What woke a subscription: the payloads received since its last wait."""

    payloads: frozenset[str]
    complete: bool = True  # False: some payloads may be missing; assume anything changed

    def concerns(self, keys: Iterable[str]) -> bool:
        """Whether this wake-up may be about one of ``keys``."""
        return not self.complete or not self.payloads.isdisjoint(keys)


def wake(channel: str, payload: str = "") -> None:
    """Tell every process subscribed to ``channel`` now; never raises."""
    if "\n" in payload or len(payload) > 512:
        raise ValueError("a wake-up payload is one short line")
    try:
        _bus().wake(channel, payload)
    except Exception:  # the safety-net ticks cover a lost wake-up
        logger.warning("could not send a wake-up on %s", channel, exc_info=True)


def subscribe(*channels: str) -> Subscription:
    """A subscription to ``channels`` (close it when done)."""
    subscription = Subscription(_bus())
    subscription.set_channels(channels)
    return subscription


class Subscription:
    """Wake-ups on some channels, kept until the next wait (thread-safe)."""

    def __init__(self, bus: _Bus) -> None:
        self._bus = bus
        self._cond = threading.Condition()
        self._woken = False
        self._payloads: set[str] = set()
        self._complete = True
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.channels: frozenset[str] = frozenset()

    def set_channels(self, channels: Iterable[str]) -> None:
        """Listen on exactly ``channels`` from now on (wake-ups of the dropped ones are no longer kept)."""
        wanted = frozenset(channels)
        added, removed = wanted - self.channels, self.channels - wanted
        self.channels = wanted
        self._bus.attach(self, added)
        self._bus.detach(self, removed)

    def close(self) -> None:
        self.set_channels(())

    def poke(self, payload: str = "") -> None:
        self._deliver((payload,), complete=True)

    def wait(self, timeout: float) -> Wake | None:
        with self._cond:
            if not self._woken:
                self._cond.wait(max(timeout, 0.0))
            return self._take_locked()

    async def wait_async(self, timeout: float) -> Wake | None:
        loop = asyncio.get_running_loop()
        with self._cond:
            taken = self._take_locked()
            if taken is not None or timeout <= 0:
                return taken
            future = loop.create_future()
            self._async_waiters.append((loop, future))
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:
            with self._cond:
                self._async_waiters = [(lp, f) for lp, f in self._async_waiters if f is not future]
        with self._cond:
            return self._take_locked()

    def _deliver(self, payloads: Iterable[str], complete: bool) -> None:
        """From the listener thread (or ``poke``): record, then wake the waiters."""
        with self._cond:
            self._woken = True
            if complete and len(self._payloads) < MAX_PENDING_PAYLOADS:
                self._payloads.update(payloads)
            else:
                self._complete = False
                self._payloads.clear()
            self._cond.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    def _take_locked(self) -> Wake | None:
        if not self._woken:
            return None
        taken = Wake(frozenset(self._payloads), self._complete)
        self._woken, self._complete = False, True
        self._payloads = set()
        return taken


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


# --- the process's bus -------------------------------------------------------------------


class _Bus(ABC):
    """One per process: the subscriptions by channel, and the transport."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = {}

    def attach(self, subscription: Subscription, channels: Iterable[str]) -> None:
        opened = []
        with self._lock:
            for channel in channels:
                holders = self._subscriptions.setdefault(channel, set())
                if not holders:
                    opened.append(channel)
                holders.add(subscription)
        if opened:
            try:
                self._open(opened)
            except Exception:  # no pipes on this filesystem, Redis down: the waiters' ticks still run
                logger.warning("wake-ups on %s unavailable; waiters fall back to their ticks",
                               ", ".join(opened), exc_info=True)

    def detach(self, subscription: Subscription, channels: Iterable[str]) -> None:
        closed = []
        with self._lock:
            for channel in channels:
                holders = self._subscriptions.get(channel)
                if holders is None:
                    continue
                holders.discard(subscription)
                if not holders:
                    del self._subscriptions[channel]
                    closed.append(channel)
        if closed:
            self._close(closed)

    def _deliver(self, channel: str, payloads: Iterable[str], complete: bool = True) -> None:
        with self._lock:
            holders = list(self._subscriptions.get(channel, ()))
        payloads = tuple(payloads)
        for subscription in holders:
            subscription._deliver(payloads, complete)

    def _deliver_everywhere_incomplete(self) -> None:
        """After a transport failure: every subscription may have missed something."""
        with self._lock:
            holders = {s for subs in self._subscriptions.values() for s in subs}
        for subscription in holders:
            subscription._deliver((), complete=False)

    @abstractmethod
    def wake(self, channel: str, payload: str) -> None:
        """Deliver to every process subscribed to ``channel``."""

    @abstractmethod
    def _open(self, channels: list[str]) -> None:
        """This process starts listening on ``channels``; returns once nothing sent from now is missed."""

    @abstractmethod
    def _close(self, channels: list[str]) -> None:
        """This process stops listening on ``channels``."""


class _FifoBus(_Bus):
    """Embedded mode: named pipes under ``root``, one per (process, channel)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root
        self._dirs: dict[str, Path] = {}  # channel -> its directory (a wake-up per chunk asks)
        self._own: dict[str, tuple[int, int, Path]] = {}  # channel -> (read fd, keep-alive write fd, path)
        self._by_fd: dict[int, str] = {}
        self._writers: dict[str, int] = {}  # a FIFO's path -> our open write fd (wake)
        self._writers_lock = threading.Lock()
        # A pipe whose write end makes the listener look at _own again; the listener's selector.
        self._control = os.pipe()
        os.set_blocking(self._control[0], False)
        os.set_blocking(self._control[1], False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._control[0], selectors.EVENT_READ)
        self._retired: list[int] = []  # read fds of closed channels, for the listener to close
        self._thread: threading.Thread | None = None
        atexit.register(self._remove_own)

    def _dir(self, channel: str) -> Path:
        directory = self._dirs.get(channel)
        if directory is None:
            name = _SAFE_NAME.sub("_", channel)
            if len(name) > 120:
                name = name[:80] + "-" + hashlib.sha256(channel.encode()).hexdigest()[:16]
            directory = self._dirs[channel] = self._root / name
        return directory

    # --- waking --------------------------------------------------------------------------

    def wake(self, channel: str, payload: str) -> None:
        directory = str(self._dir(channel))
        try:
            entries = {e.path for e in os.scandir(directory) if not e.name.startswith(".")}
        except FileNotFoundError:
            return  # nobody ever subscribed to it
        line = payload.encode() + b"\n"
        with self._writers_lock:
            # Forget the pipes of processes that unsubscribed (their files are gone).
            for path in [p for p in self._writers if os.path.dirname(p) == directory and p not in entries]:
                os.close(self._writers.pop(path))
            for path in entries:
                self._write_locked(path, line)

    def _write_locked(self, path: str, line: bytes) -> None:
        fd = self._writers.get(path)
        if fd is None:
            try:
                fd = self._writers[path] = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                return  # its process unsubscribed meanwhile
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no reader: its process is gone
                    _unlink(path)
                    return
                raise
        try:
            os.write(fd, line)
        except BlockingIOError:
            pass  # 64 KiB of wake-ups pending: that process will wake anyway
        except BrokenPipeError:  # its reader closed: the process is gone, or unsubscribed
            os.close(self._writers.pop(path))
            _unlink(path)

    # --- listening -----------------------------------------------------------------------

    def _open(self, channels: list[str]) -> None:
        try:
            for channel in channels:
                self._open_one(channel)
        finally:
            # From here a wake-up is buffered in the pipe even before the listener
            # selects it: the subscription already misses nothing.
            self._poke_listener()

    def _open_one(self, channel: str) -> None:
        directory = self._dir(channel)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        # Made under a hidden name and renamed once it has a reader: a waker
        # never finds it reader-less (which would look like a dead process's).
        temporary = directory / f".{name}"
        os.mkfifo(temporary, 0o600)
        read_fd = os.open(temporary, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the pipe open: without one, a reader sees end-of-file
        # (always readable) whenever no waker holds it open.
        keep_fd = os.open(temporary, os.O_WRONLY | os.O_NONBLOCK)
        path = directory / name
        os.rename(temporary, path)
        with self._lock:
            self._own[channel] = (read_fd, keep_fd, path)
            self._by_fd[read_fd] = channel

    def _close(self, channels: list[str]) -> None:
        with self._lock:
            gone = [self._own.pop(channel) for channel in channels if channel in self._own]
            for read_fd, _, _ in gone:
                self._by_fd.pop(read_fd, None)
        for read_fd, keep_fd, path in gone:
            _unlink(str(path))
            os.close(keep_fd)
            # The listener unregisters it before closing: see _listen.
            self._retired.append(read_fd)
        self._poke_listener()

    def _poke_listener(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="notify-listener", daemon=True)
                self._thread.start()
        try:
            os.write(self._control[1], b"x")
        except BlockingIOError:
            pass  # already poked

    def _listen(self) -> None:
        selector, control = self._selector, self._control
        registered: set[int] = set()
        while True:
            with self._lock:
                wanted = set(self._by_fd)
                retired, self._retired = self._retired, []
            for fd in registered - wanted:
                selector.unregister(fd)
            for fd in retired:
                os.close(fd)
            for fd in wanted - registered:
                selector.register(fd, selectors.EVENT_READ)
            registered = wanted
            for key, _ in selector.select():
                fd = key.fd
                if fd == control[0]:
                    _drain(fd)
                    continue
                with self._lock:
                    channel = self._by_fd.get(fd)
                if channel is None:
                    continue  # closed meanwhile
                data = _drain(fd)
                if data:
                    self._deliver(channel, (p.decode(errors="replace") for p in data.split(b"\n")[:-1]))

    def _remove_own(self) -> None:
        with self._lock:
            paths = [path for _, _, path in self._own.values()]
        for path in paths:
            _unlink(str(path))


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _RedisBus(_Bus):
    """Distributed mode: Redis pub/sub, one connection per subscribing process."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        # Bounded waits (settings.REDIS_CLIENT_OPTIONS): a wake() never hangs on a Redis that is cut off.
        self._client = redis.Redis.from_url(url, **settings.REDIS_CLIENT_OPTIONS)
        self._prefix = prefix
        self._control = f"{prefix}control:{os.getpid()}-{secrets.token_hex(4)}"
        self._pending_ops: list[tuple[str, str]] = []
        self._confirmed: set[str] = set()
        self._confirm = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def wake(self, channel: str, payload: str) -> None:
        self._client.publish(self._prefix + channel, payload)

    def _open(self, channels: list[str]) -> None:
        self._start_listener()
        with self._lock:
            self._pending_ops.extend(("subscribe", channel) for channel in channels)
        self._client.publish(self._control, "")
        deadline = time.monotonic() + SUBSCRIBE_CONFIRM_SECONDS
        with self._confirm:
            while not all(self._prefix + c in self._confirmed for c in channels):
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("Redis did not confirm the subscription to %s in time", ", ".join(channels))
                    return
                self._confirm.wait(left)

    def _close(self, channels: list[str]) -> None:
        with self._lock:
            self._pending_ops.extend(("unsubscribe", channel) for channel in channels)
        self._client.publish(self._control, "")

    def _start_listener(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._listen, name="notify-listener", daemon=True)
            self._thread.start()
        deadline = time.monotonic() + SUBSCRIBE_CONFIRM_SECONDS
        with self._confirm:
            while self._control not in self._confirmed and time.monotonic() < deadline:
                self._confirm.wait(deadline - time.monotonic())

    def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub()
            try:
                with self._lock:
                    self._confirmed.clear()
                    channels = [self._prefix + c for c in self._subscriptions]
                    self._pending_ops.clear()  # the full set is subscribed below
                pubsub.subscribe(self._control, *channels)
                self._serve(pubsub)
            except Exception:
                logger.warning("wake-up channel lost; resubscribing", exc_info=True)
                self._deliver_everywhere_incomplete()
                time.sleep(RETRY_SECONDS)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _serve(self, pubsub: Any) -> None:
        while True:
            message = pubsub.get_message(timeout=60.0)
            if message is None:
                continue
            channel = message["channel"].decode()
            if message["type"] == "subscribe":
                with self._confirm:
                    self._confirmed.add(channel)
                    self._confirm.notify_all()
            elif message["type"] == "unsubscribe":
                with self._lock:
                    self._confirmed.discard(channel)
            elif message["type"] == "message":
                if channel == self._control:
                    self._apply_ops(pubsub)
                else:
                    self._deliver(channel[len(self._prefix):], (message["data"].decode(),))

    def _apply_ops(self, pubsub: Any) -> None:
        with self._lock:
            ops, self._pending_ops = self._pending_ops, []
            live = set(self._subscriptions)
        for op, channel in ops:
            # Only what still holds: an unsubscribe followed by a new subscriber keeps the channel.
            if op == "subscribe" and channel in live:
                pubsub.subscribe(self._prefix + channel)
            elif op == "unsubscribe" and channel not in live:
                pubsub.unsubscribe(self._prefix + channel)


_buses: dict[tuple[str, str, str], _Bus] = {}
_buses_lock = threading.Lock()


def _bus() -> _Bus:
    redis_url = settings.REDIS_URL or ""
    key = (redis_url, settings.HUEY_NAME, str(settings.DATA_DIR))
    with _buses_lock:
        bus = _buses.get(key)
        if bus is None:
            if redis_url:
                bus = _RedisBus(redis_url, f"{settings.HUEY_NAME}:notify:")
            else:
                bus = _FifoBus(Path(settings.DATA_DIR) / "notify")
            _buses[key] = bus
        return bus


def _forget_after_fork() -> None:
    # A forked child has none of the parent's listener threads: it builds its own bus.
    global _buses_lock
    _buses.clear()
    _buses_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
