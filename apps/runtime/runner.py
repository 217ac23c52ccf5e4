"""One worker process (``manage.py run_worker``): register, heartbeat, run tasks.

Threads:
- the main thread fetches: while a slot is free and the operator lets the
  worker take tasks, it takes the next message from the queues of the models
  placed on it (round robin, so one busy model cannot starve another) and
  hands it to a slot;
- ``slots`` slot threads run the messages through Huey's own execution path
  (``Huey.execute``: revocation, expiry, signals, hooks), so an adapter that
  batches sees up to ``slots`` requests at once;
- the heartbeat thread reports liveness, in-flight count and device info,
  and brings back what the operator wants (active or drained) and which
  models and versions are placed here; an adapter loaded for one no longer
  placed here (the old version of a rollover once its last task ended, a
  version the placement moved away) is unloaded, after its last stream.

Nothing on a task's way in waits for a tick: the dispatcher wakes the
workers of the queue it fills (apps.scheduler.wakeup, over apps.core.notify),
and a freed slot takes the next message at once. The fetcher looks at its
queues every TICK_SECONDS besides, for a lost wake-up.

Messages are taken only when a slot is free, so nothing waits inside a
worker: whatever a drained or stopping worker did not take stays on the
model's queue for the others. Huey's scheduler (periodic jobs, delayed
retries) does not run here: the platform dispatches with no ETA, and the
periodic jobs belong to the global queue's consumer (see docs/operations.md).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection
from huey.api import Task as HueyMessage

from apps.core import notify
from apps.runtime.adapters import retire_adapters
from apps.runtime.leases import KEEPER
from apps.scheduler.queues import ModelQueue, model_queue
from apps.scheduler.wakeup import queue_channel
from apps.workers import inventory, services
from apps.workers.models import Worker, WorkerState

logger = logging.getLogger(__name__)

# The longest the fetcher waits without a wake-up: how soon it notices a stop
# signal (a handler only sets a flag) and a lost wake-up. Not on a task's path:
# a dispatch wakes it.
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerOptions:
    name: str
    slots: int
    model_names: tuple[str, ...] | None = None  # None: every enabled model


class WorkerRunner:
    def __init__(self, options: WorkerOptions, *, heartbeat_seconds: float | None = None) -> None:
        self.options = options
        self.heartbeat_seconds = heartbeat_seconds or settings.WORKER_HEARTBEAT_SECONDS
        self.worker: Worker | None = None
        # Guards the three fields below; the heartbeat reads them together to
        # tell a drained worker ("takes nothing, runs nothing") from a busy one.
        self._lock = threading.Lock()
        self._accepting = False  # the operator lets it take tasks (state "active")
        self._fetcher_idle = True  # the fetcher saw "not accepting" and will take nothing until it changes
        self._in_flight = 0
        self._queues: list[ModelQueue] = []  # replaced whole by the heartbeat thread, never mutated
        self._next_queue = 0
        self._free_slots = threading.Semaphore(options.slots)
        # The fetcher should look again: a dispatch onto one of its queues (from
        # any process), or its own state or placements changed (poked here).
        self._wakeups = notify.subscribe()
        self._beat_now = threading.Event()  # the heartbeat should report now (e.g. drain confirmed)
        self._finished = threading.Event()  # in-flight work is done; the heartbeat thread ends
        self._heartbeat_thread = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        # Set from signal handlers, so plain attributes: a handler runs between
        # two bytecodes of the main thread and must not wait for a lock it holds.
        self._stop_signal: int | None = None
        self._gone = False

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Worker:
        """Register and start heartbeating; returns the registered row."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        worker = services.register_worker(
            name=self.options.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=self.options.slots,
            device_info=inventory.device_info(),
            model_names=self.options.model_names,
        )
        self.worker = worker
        logger.info("worker %s (%s) registered with %d slots", worker.name, worker.id, self.options.slots)
        # execution.worker_name() names the lease holder in Task.worker_name
        # from this setting: it must be the registered name.
        settings.WORKER_NAME = worker.name
        self._apply(services.HeartbeatReply(worker.state, services.placed_model_names(worker)))
        # The main thread touches the database again only to mark the worker
        # stopped, perhaps hours from now; it reconnects then.
        connection.close()
        self._heartbeat_thread.start()
        KEEPER.start()
        return worker

    def serve(self) -> int:
        """Run tasks until SIGTERM/SIGINT; finish those in flight; exit status."""
        assert self.worker is not None, "start() first"
        with ThreadPoolExecutor(max_workers=self.options.slots, thread_name_prefix="slot") as slots:
            self._fetch_until_stopped(slots)
            with self._lock:
                self._fetcher_idle = True
                in_flight = self._in_flight
            reason = signal.Signals(self._stop_signal).name if self._stop_signal else "worker row removed"
            logger.info(
                "worker %s: %s: taking no new tasks, finishing %d in flight", self.worker.name, reason, in_flight
            )
        # Leaving the executor waited for the in-flight tasks; the heartbeat
        # kept the worker visibly alive meanwhile.
        self._finished.set()
        self._beat_now.set()
        self._heartbeat_thread.join()  # no heartbeat may land after the stop is recorded
        self._wakeups.close()
        if self._gone:
            return 1
        services.mark_stopped(self.worker.id)
        logger.info("worker %s stopped", self.worker.name)
        return 0

    def _request_stop(self, signum: int, frame) -> None:  # signal handler
        # A second signal (Ctrl-C reaches the whole process group, then the
        # supervisor sends SIGTERM) must not cut the graceful stop short.
        if self._stop_signal is None:
            self._stop_signal = signum

    @property
    def _stopping(self) -> bool:
        return self._stop_signal is not None or self._gone

    # --- fetching ----------------------------------------------------------------------

    def _fetch_until_stopped(self, slots: ThreadPoolExecutor) -> None:
        while not self._stopping:
            with self._lock:
                accepting = self._accepting
                became_idle = not accepting and not self._fetcher_idle
                self._fetcher_idle = not accepting
            if became_idle:
                self._beat_now.set()  # confirm the drain without waiting for the next heartbeat
            if not accepting:
                self._wakeups.wait(TICK_SECONDS)
                continue
            if not self._free_slots.acquire(timeout=TICK_SECONDS):
                continue  # every slot busy: a task's end frees one at once
            found = self._next_message()
            if found is None:
                self._free_slots.release()
                # Subscribed before this look: a dispatch since then returns at once.
                self._wakeups.wait(TICK_SECONDS)
                continue
            with self._lock:
                self._in_flight += 1
            slots.submit(self._run, *found)

    def _next_message(self) -> tuple[ModelQueue, HueyMessage] | None:
        queues = self._queues
        for offset in range(len(queues)):
            index = (self._next_queue + offset) % len(queues)
            try:
                message = queues[index].huey.dequeue()
            except Exception:  # queue down, or a message no job here can read: log, go on
                logger.exception("could not take a message from %s", queues[index].huey.name)
                continue
            if message is not None:
                self._next_queue = index + 1
                return queues[index], message
        return None

    def _run(self, queue: ModelQueue, message: HueyMessage) -> None:  # in a slot thread
        try:
            queue.huey.execute(message)
        except Exception:  # Huey catches the job's own errors; this is its storage failing
            logger.exception("running %s from %s failed", message, queue.huey.name)
        finally:
            with self._lock:
                self._in_flight -= 1
                drained = not self._accepting and self._in_flight == 0
            self._free_slots.release()
            if drained:
                self._beat_now.set()

    # --- heartbeat ---------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not (self._finished.is_set() or self._gone):
            self._beat_now.clear()
            self._beat()
            self._beat_now.wait(self.heartbeat_seconds)

    def _beat(self) -> None:
        assert self.worker is not None, "the heartbeat starts once start() has registered"
        with self._lock:
            in_flight = self._in_flight
            idle = self._fetcher_idle and in_flight == 0
        try:
            reply = services.heartbeat(
                self.worker.id, in_flight=in_flight, idle=idle, device_info=inventory.device_info()
            )
        except services.WorkerGone:
            logger.error("worker %s: its row was removed; stopping", self.options.name)
            self._gone = True
            return
        except Exception:  # database down: keep running what we have, try again next beat
            logger.exception("worker %s: heartbeat failed", self.options.name)
            return
        finally:
            close_old_connections()
        self._apply(reply)

    def _apply(self, reply: services.HeartbeatReply) -> None:
        accepting = reply.state == WorkerState.ACTIVE
        with self._lock:
            accepting_changed = accepting != self._accepting
            self._accepting = accepting
        if accepting_changed:
            logger.info("worker %s is %s: %s", self.options.name, reply.state,
                        "taking tasks" if accepting else "taking no new tasks")
        placements_changed = reply.model_names != tuple(q.model_name for q in self._queues)
        if placements_changed:
            # Subscribed before the queues change: a dispatch onto a new queue is not missed.
            self._wakeups.set_channels(queue_channel(name) for name in reply.model_names)
            self._queues = [model_queue(name) for name in reply.model_names]
            logger.info("worker %s serves: %s", self.options.name, ", ".join(reply.model_names) or "no model")
        if accepting_changed or placements_changed:
            self._wakeups.poke()
        retired = retire_adapters(reply.model_names)
        if retired:
            logger.info("worker %s unloads %s (no longer placed here)", self.options.name, ", ".join(retired))
