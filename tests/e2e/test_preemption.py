"""Preemption on the real stack (issue 12): four batch generations on the tiny
model fill a 4-slot worker; an interactive task arrives and streams its first
token while a batch one is suspended; all five finish with the outputs of their
uninterrupted runs (greedy and seeded sampling alike) and are charged their
tokens once.

The order is proved by the platform's own records, never by durations: the
worker has 4 slots, so an interactive first token recorded before any of the
four batch tasks finished was generated while one of them was off its slot;
and a batch task that was preempted shows it in its row (preemptions) and in
its stream ("suspended", then "resumed", its chunks counting on). The
uninterrupted outputs come from the same requests run first on the idle
worker (nothing waits there: nothing is preempted). Runs on SQLite and on
PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.suspension_support import (
    assert_whole_stream,
    chunks,
    kinds,
    read_stream,
    run_alone,
    running_stack,
    settled_usage,
    submit,
    task_rows,
    wait_ended,
)

pytestmark = pytest.mark.e2e

# Long enough to still be running when the interactive task takes a slot (the
# reference runs check it), short enough to keep the test quick. Greedy and seeded
# sampling both: each must resume exactly where it stopped.
BATCH = [
    {"model": "tiny", "prompt": "batch story 5", "max_tokens": 200, "temperature": 0.8, "seed": 5},
    {"model": "tiny", "prompt": "batch story 7", "max_tokens": 200, "temperature": 0.8, "seed": 7},
    {"model": "tiny", "prompt": "story number 2", "max_tokens": 200, "temperature": 0},
    {"model": "tiny", "prompt": "story number 3", "max_tokens": 200, "temperature": 0},
]
INTERACTIVE = {"model": "tiny", "prompt": "hello there", "max_tokens": 20, "temperature": 0.7, "seed": 11,
               "priority": "interactive"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_path):
    # No minimum run time: the batch tasks may be preempted as soon as they stream.
    with isolated_platform_env(tmp_path_factory.mktemp("preemption"), PREEMPT_MIN_RUN_SECONDS="0") as env:
        with running_stack(env, tiny_model_path, slots=4) as running:
            yield running


def test_an_interactive_task_preempts_a_full_worker_and_every_output_equals_its_uninterrupted_run(stack):
    bodies = [{**body, "priority": "batch"} for body in BATCH]
    with stack.client() as client:
        # The uninterrupted runs: the interactive alone, then the four batch ones on four free slots.
        reference = run_alone(client, [INTERACTIVE]) + run_alone(client, bodies)
        for body in reference[1:]:
            # Long enough that none can end before the interactive task is served below.
            assert body["usage"]["completion_tokens"] >= 100, body

        async def scenario():
            started = [asyncio.Event() for _ in bodies]
            batch_ids = [submit(client, body) for body in bodies]
            readers = [
                asyncio.create_task(read_stream(stack, task_id, seen=event, chunks_before_seen=2))
                for task_id, event in zip(batch_ids, started, strict=True)
            ]
            # All four hold a slot and stream: the worker is full.
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 60)
            urgent_id = submit(client, INTERACTIVE)
            urgent = await read_stream(stack, urgent_id)
            return batch_ids, urgent_id, await asyncio.gather(*readers), urgent

        batch_ids, urgent_id, batch_streams, urgent_stream = asyncio.run(scenario())
        ended = [wait_ended(client, task_id) for task_id in [urgent_id, *batch_ids]]
        usage = settled_usage(client)
        every_task = client.get("/api/v1/tasks", params={"page_size": 100}).json()["results"]

    rows = task_rows(stack, [urgent_id, *batch_ids, *(body["id"] for body in reference)])
    for body in reference:
        assert (rows[body["id"]]["preemptions"], rows[body["id"]]["slices"]) == (0, 0)  # truly uninterrupted

    # Same outputs and usage as the uninterrupted runs: nothing lost, repeated or charged twice.
    for done, expected in zip(ended, reference, strict=True):
        assert done["status"] == "succeeded", done
        assert done["output"] == expected["output"], done["id"]
        assert done["usage"] == expected["usage"], done["id"]

    # The interactive task was served while the worker was full of batch generations:
    # its first token came before any of the four ended (4 slots, so one was off its
    # slot then) and at least one of them was preempted (suspended, then resumed).
    urgent_row = rows[urgent_id]
    assert urgent_row["preemptions"] == 0
    assert all(urgent_row["first_token_at"] < rows[task_id]["finished_at"] for task_id in batch_ids), rows
    preempted = [task_id for task_id in batch_ids if rows[task_id]["preemptions"] >= 1]
    assert preempted, rows
    for task_id in preempted:
        # Its last segment started once a slot was free again: after the interactive first token.
        assert rows[task_id]["started_at"] > urgent_row["first_token_at"], rows[task_id]
        assert rows[task_id]["attempt"] == 1 and rows[task_id]["slices"] == 0

    # Each stream, read live across the suspension: every chunk once, in order, the stored text.
    for task_id, messages, done in zip(batch_ids, batch_streams, ended[1:], strict=True):
        assert_whole_stream(messages, done["output"])
        suspended = [m for m in messages if m["type"] == "suspended"]
        assert len(suspended) == rows[task_id]["preemptions"], messages
        assert all(m == {"type": "suspended", "reason": "preempted"} for m in suspended)
        assert messages[-1]["usage"] == done["usage"]
    assert_whole_stream(urgent_stream, ended[0]["output"])
    assert "suspended" not in kinds(urgent_stream) and chunks(urgent_stream)

    # Charged once: the budget's spent tokens are every task's tokens, nothing left reserved.
    assert len(every_task) == 10
    assert usage["spent_tokens"] == sum(task["usage"]["total_tokens"] for task in every_task)
    assert usage["reserved_tokens"] == 0
