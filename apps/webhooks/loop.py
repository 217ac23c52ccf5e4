"""The delivery loop: a thread of the scheduler process (run_scheduler) that
sends due webhook deliveries.

Woken when a delivery is written (apps.core.notify, channel ``webhooks``) and
otherwise when the next one is due, or every WEBHOOK_TICK_SECONDS as a safety
net. Attempts run in a few threads, so one slow receiver (up to
WEBHOOK_TIMEOUT_SECONDS an attempt) does not hold up the others. Safe to run
in several processes at once: each delivery is taken with a conditional
UPDATE (apps.webhooks.services.deliver_due).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections

from apps.core import notify
from apps.webhooks import services

logger = logging.getLogger(__name__)

SENDERS = 4  # attempts in flight at once


class DeliveryLoop:
    def __init__(self) -> None:
        self._stopping = threading.Event()
        # Subscribed before the first look: a delivery written meanwhile wakes the next.
        self._wakeups = notify.subscribe(services.WAKE_CHANNEL)
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook-sender")
        self._thread = threading.Thread(target=self._run, name="webhook-deliveries", daemon=True)

    def start(self) -> DeliveryLoop:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wakeups.poke()
        self._thread.join(timeout)
        self._senders.shutdown(wait=False, cancel_futures=True)
        self._wakeups.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = settings.WEBHOOK_TICK_SECONDS
            try:
                services.deliver_due(executor=self._senders)
                wait = services.seconds_until_due(settings.WEBHOOK_TICK_SECONDS)
            except Exception:  # the database away for a while must not end the loop
                logger.exception("webhook delivery round failed; retrying")
                close_old_connections()
            self._wakeups.wait(wait)
