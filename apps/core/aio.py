"""Small asyncio helpers shared by the loops that tick on timeouts."""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise the cancellation of the current task if one was requested and swallowed.

    A task cancelled while it awaits code that catches CancelledError (a client
    library resetting its connection, say) stays "cancelling" without the
    exception ever reaching it. From then on ``asyncio.timeout`` turns every
    expiry into a TimeoutError, so a loop that ticks on timeouts would run on
    for ever after its client left: each tick calls this first.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
