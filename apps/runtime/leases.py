"""One lease keeper per worker process: renews the leases of all its running tasks together.

A task being generated must renew its lease (or the reaper requeues it) and
must notice a cancel request soon. Doing that from each slot thread cost one
UPDATE per running task per second and kept a database connection open per
slot for the whole generation: at 1,000 concurrent streams, 1,000 queries a
second and 1,000 PostgreSQL connections (the server's default limit is 100).
Here one thread renews every held lease with ``renew_leases`` (a couple of
queries, whatever the count) and raises the stop flag of each task that must
stop; a slot thread only looks at its flag, and needs the database only to
claim and to finish.

A cancel does not wait for the next renewal: ``cancel_task`` wakes the
task-cancel channel (apps.core.notify) with the task's id, and the keeper of
the worker holding it checks at once, raises the flag and tells the adapter
(``Hold.on_stop``), so a generation stops within a token of the request.
A suspension the scheduler asks for (apps.tasks.suspension) travels the same
way on the task-suspend channel and reaches the adapter through
``Hold.on_suspend``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

from apps.core import notify
from apps.tasks import services as task_services
from apps.tasks.models import Task
from apps.tasks.suspension import SUSPEND_CHANNEL, SUSPEND_PAYLOAD_PREFIX, suspensions_in

logger = logging.getLogger(__name__)



@dataclass
class Hold:
    """A running attempt's hold on its task; ``stop`` is set when it must stop."""

    task_id: uuid.UUID
    attempt: int
    stop: threading.Event = field(default_factory=threading.Event)
    # Called (from the keeper's thread) when the flag is raised: the runner
    # cancels the adapter's stream there, so a generation waiting for its next
    # token stops without waiting for it.
    on_stop: Callable[[], None] | None = None
    # Set when the scheduler asked to suspend it; ``on_suspend`` (the adapter's
    # suspend, for adapters that can) is called once then, from the keeper's thread.
    suspend: threading.Event = field(default_factory=threading.Event)
    on_suspend: Callable[[], None] | None = None

    @property
    def must_stop(self) -> bool:
        return self.stop.is_set()

    @property
    def must_suspend(self) -> bool:
        return self.suspend.is_set()

    def raise_suspend(self) -> None:
        if not self.stop.is_set():  # a stop (cancel, lost lease) wins over a suspension
            self._raise(self.suspend, self.on_suspend, "suspending")

    def raise_stop(self) -> None:
        self._raise(self.stop, self.on_stop, "stopping")

    def _raise(self, flag: threading.Event, tell: Callable[[], None] | None, doing: str) -> None:
        """Set ``flag`` and call ``tell`` once (the first time only)."""
        if flag.is_set():
            return
        flag.set()
        if tell is not None:
            try:
                tell()
            except Exception:  # the slot thread still sees the flag after its next token
                logger.exception("%s task %s failed", doing, self.task_id)


class LeaseKeeper:
    def __init__(self, renew_seconds: float | None = None) -> None:
        # How often the leases are renewed (settings.TASK_LEASE_RENEW_SECONDS), and
        # cancel requests looked for even without a wake-up (one lost on the way).
        self._renew_seconds = renew_seconds
        self._holds: dict[uuid.UUID, Hold] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancels: notify.Subscription | None = None
        self._stopping = threading.Event()

    @property
    def renew_seconds(self) -> float:
        # Read when used, not at import: the process-wide keeper exists before a test changes settings.
        return self._renew_seconds if self._renew_seconds is not None else settings.TASK_LEASE_RENEW_SECONDS

    def hold(
        self, task: Task, on_stop: Callable[[], None] | None = None, on_suspend: Callable[[], None] | None = None,
    ) -> Hold:
        """Keep ``task``'s lease (as claimed: its current attempt) until ``release``;
        ``on_stop`` is called once if it must stop meanwhile, ``on_suspend`` once if
        the scheduler asks to suspend it."""
        held = Hold(task.pk, task.attempt, on_stop=on_stop, on_suspend=on_suspend)
        with self._lock:
            self._holds[task.pk] = held
        return held

    def start(self) -> None:
        """Renew in a background thread from now on (a worker process calls this once).

        Not started on first use: a task run in-process elsewhere (Huey's
        immediate mode in tests, a shell) has no worker around it, and a thread
        outside its transaction would see its task as not running and stop it.
        """
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                # Subscribed here, before any task is held: no cancel is missed.
                self._cancels = notify.subscribe(task_services.CANCEL_CHANNEL, SUSPEND_CHANNEL)
                self._thread = threading.Thread(
                    target=self._loop, args=(self._cancels,), name="lease-keeper", daemon=True
                )
                self._thread.start()

    def release(self, held: Hold) -> None:
        with self._lock:
            held.on_stop = held.on_suspend = None  # its stream is over: nothing left to stop
            if self._holds.get(held.task_id) is held:
                del self._holds[held.task_id]

    def renew_once(self) -> None:
        """Renew every held lease now; raise the stop flag of those that must stop."""
        with self._lock:
            holds = list(self._holds.values())
        if not holds:
            return
        found = task_services.renew_leases_round({h.task_id: h.attempt for h in holds})
        for held in holds:
            if held.task_id not in found.owned:
                held.raise_stop()
            elif held.task_id in found.suspend:
                held.raise_suspend()

    def _suspend_named(self, woken: notify.Wake) -> bool:
        """Raise the suspend flag of the held tasks a task-suspend wake-up names, at once:
        the scheduler committed the ask before it woke us, so no read is needed (a
        renewal would find it too). True when the wake-up held nothing but suspensions."""
        named = suspensions_in(woken.payloads)
        if not named:
            return False
        with self._lock:
            holds = [held for task_id, held in self._holds.items() if str(task_id) in named]
        for held in holds:
            held.raise_suspend()
        return all(payload.startswith(SUSPEND_PAYLOAD_PREFIX) for payload in woken.payloads)

    def _held_ids(self) -> list[str]:
        with self._lock:
            return [str(task_id) for task_id in self._holds]

    def stop(self) -> None:
        """End the background thread (after its current round)."""
        with self._lock:
            thread, self._thread = self._thread, None
            cancels = self._cancels
        self._stopping.set()
        if cancels is not None:
            cancels.poke()
        if thread is not None:
            thread.join()
        self._stopping.clear()

    def _loop(self, cancels: notify.Subscription) -> None:
        next_round = time.monotonic() + self.renew_seconds
        try:
            while not self._stopping.is_set():
                woken = cancels.wait(next_round - time.monotonic())
                if self._stopping.is_set():
                    break
                if (woken is not None and woken.complete and self._suspend_named(woken)
                        and time.monotonic() < next_round):
                    continue  # the suspensions it asked are raised; nothing else to check
                if time.monotonic() < next_round and (woken is None or not woken.concerns(self._held_ids())):
                    continue  # a cancel of another worker's task (suspensions were raised above)
                next_round = time.monotonic() + self.renew_seconds
                try:
                    self.renew_once()
                except Exception:  # database down: the leases are long; try again next round
                    logger.exception("renewing task leases failed")
                finally:
                    close_old_connections()  # back to the pool (or closed) between rounds
        finally:
            cancels.close()


KEEPER = LeaseKeeper()
"""The process's keeper: every slot thread of a worker holds its task here."""
