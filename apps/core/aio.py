"""Small asyncio helpers: for the loops that tick on timeouts, and running sync code off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

T = TypeVar("T")


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


def in_pooled_thread(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``function`` as a coroutine run in the event loop's pool of long-lived threads.

    asgiref's default under Django's request cycle starts a new thread for each
    request (its ThreadSensitiveContext), and with it a new database connection
    (a SQLite file opened, a pooled PostgreSQL connection taken): a measurable
    part of a /v1 request's CPU. The pool's threads keep theirs; like Channels'
    ``database_sync_to_async``, the connections are checked before and after, so
    a broken or expired one (and a pooled PostgreSQL one, handed back) is not
    kept. Only for code that needs no thread of its own: no transaction is
    shared with the caller's thread."""

    def with_checked_connections(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(with_checked_connections, thread_sensitive=False)
