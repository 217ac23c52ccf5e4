"""manage.py run_scheduler: the dispatcher loop plus the periodic jobs.

Run one per installation (`make run` starts it), and any number of standbys:
only the holder of the scheduler lock (apps.scheduler.leadership) dispatches
and runs the periodic jobs; the others wait, ask for the lock every
STANDBY_POLL_SECONDS and take over when its holder dies, rebuilding the
dispatcher's state from the database and putting back on the queues the
dispatched tasks whose messages are gone (also every QUEUE_RECONCILE_SECONDS,
for a Redis restarted or flushed). A leader that loses the lock stops
dispatching at once and stands by. The leader dispatches on
every wake-up (apps.scheduler.wakeup: a task became ready or a slot freed, in
both modes) and, as a safety net for a lost wake-up and for aging, every
SCHEDULER_TICK_SECONDS; it runs the placement every PLACEMENT_SECONDS, the
lease reaper every TASK_LEASE_RENEW_SECONDS (apps.scheduler.reaper), and the
global queue's periodic jobs (stale dispatches, placement, charges,
unplaceable tasks, retention) with an in-process Huey consumer. SIGTERM or SIGINT stops it after the
current round.
"""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from apps.core import notify
from apps.core.logs import set_process_name
from apps.scheduler import wakeup
from apps.scheduler.dispatch import requeue_lost_messages
from apps.scheduler.dispatcher import Dispatcher
from apps.scheduler.leadership import STANDBY_POLL_SECONDS, Leadership, this_process
from apps.scheduler.placer import apply_placement
from apps.scheduler.reaper import LeaseReaper
from apps.webhooks.loop import DeliveryLoop

logger = logging.getLogger(__name__)

# The placement, and with it the replica scaler (apps.scheduler.autoscale), runs
# this often from this loop, on top of the minutely periodic job and the runs
# that events trigger. The scaler sees a queue only when it runs: once a minute,
# "long for 30 s" would mean "long at two runs a minute apart", and a replica
# would come up to a minute late. Every 5 s resolves the 30 s delay to within
# a sixth; a run is a few queries (and writes only what changed), against
# the dispatcher's rounds every SCHEDULER_TICK_SECONDS. Not a Huey periodic
# job: their crontab has a one-minute resolution.
PLACEMENT_SECONDS = 5.0


class Command(BaseCommand):
    help = "Run the dispatcher and the periodic scheduler jobs in the foreground (or stand by for the leader)."
    stopping = False  # set by SIGTERM/SIGINT: stop after the current round

    def handle(self, *args, **options) -> None:
        self.stopping = False
        set_process_name("scheduler")  # its log lines say which process wrote them
        leadership = Leadership.for_database()
        try:
            while not self.stopping:
                if self._wait_for_leadership(leadership):
                    self._lead(leadership)
        finally:
            leadership.release()

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def _own_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _wait_for_leadership(self, leadership: Leadership) -> bool:
        """Stand by until this process holds the scheduler lock (True) or is stopped (False)."""
        self._own_signals()
        said: str | None = None
        while not self.stopping:
            if leadership.acquire():
                return True
            leader = leadership.leader() or "unknown"
            if leader != said:  # once per leader, not once a second
                logger.warning("standby: another scheduler leads (%s); taking over when it stops", leader)
                said = leader
            deadline = time.monotonic() + STANDBY_POLL_SECONDS
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.05)
        return False

    def _lead(self, leadership: Leadership) -> None:
        """Dispatch and run the periodic jobs while this process holds the lock."""
        logger.warning("leading as %s: rebuilding the queues from the database", this_process())
        consumer = settings.HUEY.create_consumer(workers=1, worker_type="thread", periodic=True)
        consumer.start()
        # After start(): the consumer installs handlers of its own; this loop owns the stop.
        self._own_signals()
        dispatcher = Dispatcher()
        reaper = LeaseReaper()  # dead workers' tasks back to the queue within seconds
        # Webhooks: ended tasks' deliveries, in a thread of its own (apps.webhooks.loop).
        deliveries = DeliveryLoop().start()
        # Subscribed before the first round: a submission committed while that
        # round runs wakes the next one.
        wakeups = wakeup.dispatcher_wakeups()
        woken: notify.Wake | None = None
        next_placement = time.monotonic() + PLACEMENT_SECONDS
        next_requeue = time.monotonic()  # at once: a new leader finds what the last one left
        self.stderr.write("scheduler running: dispatch loop and periodic jobs")
        try:
            while not self.stopping:
                if not leadership.holds():
                    # Another scheduler may lead from now on: not one more task from here.
                    logger.error("lost the scheduler lock (database connection gone): dispatching stopped")
                    return
                # Tasks ended and none waits for a slot: nothing to hand out (their
                # fair-share corrections wait for the next round that has work).
                if not (wakeup.only_slots_freed(woken) and not dispatcher.has_waiting()):
                    try:
                        dispatcher.run_once()
                    except Exception:  # a database blip must not end the scheduler
                        logger.exception("dispatch round failed; retrying")
                        close_old_connections()
                reaper.run_if_due()  # (it keeps its own round, and survives a database blip)
                if time.monotonic() >= next_requeue:
                    next_requeue = time.monotonic() + settings.QUEUE_RECONCILE_SECONDS
                    try:
                        requeue_lost_messages()
                    except Exception:  # Redis or the database down: the next run catches up
                        logger.exception("re-enqueuing lost queue messages failed; retrying")
                        close_old_connections()
                if time.monotonic() >= next_placement:
                    next_placement = time.monotonic() + PLACEMENT_SECONDS
                    try:
                        apply_placement()
                    except Exception:  # as above; the next run (or the periodic job) catches up
                        logger.exception("placement run failed; retrying")
                        close_old_connections()
                # Wake-ups that arrive during a round coalesce into one more round:
                # under load, one round serves every submission since the last.
                woken = wakeups.wait(min(settings.SCHEDULER_TICK_SECONDS, max(0.0, next_placement - time.monotonic())))
        finally:
            deliveries.stop()
            wakeups.close()
            consumer.stop(graceful=True)
