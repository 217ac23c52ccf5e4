"""Waking the dispatcher when work arrives, instead of waiting for its next tick.

With Redis (distributed mode) a submission in any API process pushes to a
list the scheduler blocks on. Embedded mode has no cross-process signal: the
scheduler polls every SCHEDULER_TICK_SECONDS.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

logger = logging.getLogger(__name__)


def _key() -> str:
    return f"{settings.HUEY_NAME}:dispatcher:wake"


def _redis():
    from huey.storage import RedisStorage

    storage = settings.HUEY.storage
    return storage.conn if isinstance(storage, RedisStorage) else None


def wake_dispatcher() -> None:
    conn = _redis()
    if conn is None:
        return
    try:
        pipe = conn.pipeline(transaction=False)
        pipe.lpush(_key(), 1)
        pipe.ltrim(_key(), 0, 0)  # one pending wake-up is enough
        pipe.execute()
    except Exception as exc:  # the tick still runs: a lost wake-up only delays
        logger.warning("could not wake the dispatcher: %s", exc)


def wait_for_work(timeout: float) -> None:
    conn = _redis()
    if conn is None:
        time.sleep(timeout)
        return
    try:
        conn.blpop([_key()], timeout=max(timeout, 0.01))
    except Exception as exc:
        logger.warning("dispatcher wake-up channel unavailable: %s", exc)
        time.sleep(timeout)
