"""The lease reaper, run by the scheduler's loop every TASK_LEASE_RENEW_SECONDS.

A task whose lease ran out (its worker died, or was cut off from the
database) goes back to the queue (apps.tasks.services.reap_expired_leases):
with the defaults, within TASK_LEASE_SECONDS + TASK_LEASE_RENEW_SECONDS of
its worker's last renewal, where the minutely Huey job it replaces took up
to a minute more.

A short lease has one trap: when the database itself was away, every lease
lapsed meanwhile, and the workers, which kept generating, renew only once it
is back. Reaping at once would re-run every running task. So after the reaper
(re)gains the database (its start included: a standby taking over, a restart
after an outage) it waits one lease length before it reaps: a live worker
has renewed by then; a dead one has not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connection

from apps.scheduler.dispatch import reap_and_requeue

logger = logging.getLogger(__name__)


class LeaseReaper:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next_round = 0.0
        self._reachable_since: float | None = None  # since when every round reached the database

    def run_if_due(self) -> int:
        """Reap if a round is due; how many tasks were requeued."""
        now = self._clock()
        if now < self._next_round:
            return 0
        self._next_round = now + settings.TASK_LEASE_RENEW_SECONDS
        try:
            if self._reachable_since is None:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                self._reachable_since = now
            if now - self._reachable_since < settings.TASK_LEASE_SECONDS:
                return 0  # the workers' renewals first (see the module docstring)
            return reap_and_requeue()
        except Exception:  # the database is away: try again next round, and wait once it is back
            logger.exception("lease reaper: round failed")
            self._reachable_since = None
            close_old_connections()
            return 0
