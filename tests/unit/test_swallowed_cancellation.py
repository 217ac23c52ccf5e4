"""A loop that ticks on timeouts ends when its task is cancelled, even when the
cancellation was swallowed by something it awaited (apps.core.aio): without the
check, asyncio.timeout turns every later tick into a TimeoutError and the loop
runs on (a /v1 stream kept a left client's task alive ~30 s on PostgreSQL+Redis)."""

from __future__ import annotations

import asyncio

import pytest

from apps.core.aio import raise_if_cancelled

TICKS = 50


async def _ticking_loop() -> str:
    try:
        await asyncio.sleep(1)
    except asyncio.CancelledError:
        pass  # as a client library resetting its connection does
    for _ in range(TICKS):
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            raise_if_cancelled()
    return "ran on"


def test_a_swallowed_cancellation_still_ends_a_ticking_loop():
    async def main() -> None:
        task = asyncio.create_task(_ticking_loop())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
