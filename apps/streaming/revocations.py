"""Open streams end when the key that opened them is revoked, within about a second.

``revoke_api_key`` wakes ``KEY_REVOKED_CHANNEL`` with the key's id once the
revocation commits. Each server process's event loop has one ``KeyWatch``: it
holds, per key, the streams opened with that key (directly, or with a stream
token the key issued) and closes them when the key's wake-up arrives. Wake-ups
are best effort (apps.core.notify): when one may have been dropped, and every
``RECHECK_SECONDS`` in any case, the watch asks the database which of its keys
no longer authenticate. The watch runs only while some stream is open.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async

from apps.core import notify
from apps.tenants.services import KEY_REVOKED_CHANNEL, unusable_keys

logger = logging.getLogger(__name__)

# The safety net for a lost wake-up (an expired key also ends here, this late at most).
RECHECK_SECONDS = 30.0

Closer = Callable[[], Awaitable[None]]


class KeyWatch:
    def __init__(self) -> None:
        self._streams: dict[uuid.UUID, set[Closer]] = {}
        self._runner: asyncio.Task | None = None
        self._subscription: notify.Subscription | None = None

    def watch(self, key_id: uuid.UUID, close: Closer) -> None:
        """Call ``close`` once if ``key_id`` stops authenticating while watched."""
        self._streams.setdefault(key_id, set()).add(close)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())

    def forget(self, key_id: uuid.UUID, close: Closer) -> None:
        closers = self._streams.get(key_id)
        if closers is not None:
            closers.discard(close)
            if not closers:
                del self._streams[key_id]
        if not self._streams and self._subscription is not None:
            self._subscription.poke()  # nothing left to watch: let the runner end now

    async def _run(self) -> None:
        subscription = self._subscription = notify.subscribe(KEY_REVOKED_CHANNEL)
        try:
            # The streams opened before the subscription: a revocation in between is
            # caught by this first look.
            revoked = await database_sync_to_async(unusable_keys)(set(self._streams))
            while True:
                for key_id in revoked:
                    for close in self._streams.pop(key_id, set()):
                        await close()
                if not self._streams:
                    return
                wake = await subscription.wait_async(RECHECK_SECONDS)
                if not self._streams:
                    return
                if wake is not None and wake.complete:
                    revoked = {key_id for key_id in self._streams if str(key_id) in wake.payloads}
                else:  # timed out, or some wake-ups may have been dropped: ask the database
                    revoked = await database_sync_to_async(unusable_keys)(set(self._streams))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the revoked-key watch stopped; open streams are rechecked when the next one opens")
        finally:
            self._subscription = None
            subscription.close()


_watches: dict[int, KeyWatch] = {}


def key_watch() -> KeyWatch:
    """This event loop's watch (the server has one loop; tests may have several)."""
    loop_id = id(asyncio.get_running_loop())
    instance = _watches.get(loop_id)
    if instance is None:
        instance = _watches[loop_id] = KeyWatch()
    return instance
