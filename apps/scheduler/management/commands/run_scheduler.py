"""manage.py run_scheduler: the dispatcher loop plus the periodic jobs.

Run exactly one per installation (`make run` starts it). It dispatches on
every wake-up (a submission with Redis) and every SCHEDULER_TICK_SECONDS,
runs the placement every PLACEMENT_SECONDS, and runs the global queue's
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
        next_placement = time.monotonic() + PLACEMENT_SECONDS
        self.stderr.write("scheduler running: dispatch loop and periodic jobs")
        try:
            while not stopping:
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
                wakeup.wait_for_work(settings.SCHEDULER_TICK_SECONDS)
        finally:
            consumer.stop(graceful=True)
