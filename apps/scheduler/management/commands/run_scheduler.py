"""manage.py run_scheduler: the dispatcher loop plus the periodic jobs.

Run exactly one per installation (`make run` starts it). It dispatches on
every wake-up (apps.scheduler.wakeup: a task became ready or a slot freed, in
both modes) and, as a safety net for a lost wake-up and for aging, every
SCHEDULER_TICK_SECONDS; it runs the placement every PLACEMENT_SECONDS, and runs the global queue's
periodic jobs (lease reaper, stale dispatches, placement, charges, retention)
with an in-process Huey consumer. SIGTERM or SIGINT stops it after the
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
from apps.scheduler import wakeup
from apps.scheduler.dispatcher import Dispatcher
from apps.scheduler.placer import apply_placement

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
    help = "Run the dispatcher and the periodic scheduler jobs in the foreground."

    def handle(self, *args, **options) -> None:
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        consumer = settings.HUEY.create_consumer(workers=1, worker_type="thread", periodic=True)
        consumer.start()
        # After start(): the consumer installs handlers of its own; this loop owns the stop.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        dispatcher = Dispatcher()
        # Subscribed before the first round: a submission committed while that
        # round runs wakes the next one.
        wakeups = wakeup.dispatcher_wakeups()
        woken: notify.Wake | None = None
        next_placement = time.monotonic() + PLACEMENT_SECONDS
        self.stderr.write("scheduler running: dispatch loop and periodic jobs")
        try:
            while not stopping:
                # Tasks ended and none waits for a slot: nothing to hand out (their
                # fair-share corrections wait for the next round that has work).
                if not (wakeup.only_slots_freed(woken) and not dispatcher.has_waiting()):
                    try:
                        dispatcher.run_once()
                    except Exception:  # a database blip must not end the scheduler
                        logger.exception("dispatch round failed; retrying")
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
            wakeups.close()
            consumer.stop(graceful=True)
