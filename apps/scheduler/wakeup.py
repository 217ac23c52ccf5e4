"""The scheduler's two wake-ups (apps.core.notify carries them, in both modes).

- ``dispatcher``: a task became ready (submitted, released, requeued) or a
  slot freed (a task ended: payload SLOT_FREED; the fleet changed): the
  dispatcher runs a round now instead of at its next tick. Sent after the
  change is committed. A round woken only by ended tasks, with no task
  waiting for a slot, has nothing to hand out and is skipped.
- ``queue:<queue name>``: the dispatcher put task ids on that model queue
  (apps.scheduler.queues): the workers consuming it take them now instead of
  at their next look.

Otherwise no payload: what to do is read from the database and the queues.
"""

from __future__ import annotations

from django.conf import settings

from apps.core import notify

DISPATCHER_CHANNEL = "dispatcher"
SLOT_FREED = "slot-freed"


def queue_channel(queue_spec: str) -> str:
    """The channel of the model queue ``queue_spec`` ("name" or "name@version")."""
    return f"queue:{settings.HUEY_NAME}.model.{queue_spec}"


def wake_dispatcher(*_: object) -> None:
    """(Arguments ignored: it is registered on hooks that pass some.)"""
    notify.wake(DISPATCHER_CHANNEL)


def slot_freed(*_: object) -> None:
    """A task ended (registered on apps.tasks.lifecycle ``ended``)."""
    notify.wake(DISPATCHER_CHANNEL, SLOT_FREED)


def only_slots_freed(woken: notify.Wake | None) -> bool:
    """Whether ``woken`` says no more than "tasks ended" (a tick, None, says more)."""
    return woken is not None and woken.complete and woken.payloads == {SLOT_FREED}


def dispatcher_wakeups() -> notify.Subscription:
    """What the dispatcher loop waits on between rounds."""
    return notify.subscribe(DISPATCHER_CHANNEL)


def wake_queue_consumers(queue_spec: str) -> None:
    notify.wake(queue_channel(queue_spec))
