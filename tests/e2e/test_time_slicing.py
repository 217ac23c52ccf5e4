"""Time slicing on the real stack (issue 12): three long generations of one class
on a 1-slot worker, a model with time_slice_tokens = 4: they share the slot
round robin, each advancing every round, and each ends with the output of its
uninterrupted run.

The rounds are read from the worker's own log (one slot: its run segments
start one after another, each logged when claimed) and from the streams (the
text each segment delivered); no duration is asserted. The uninterrupted runs
are the same requests on the same model one at a time, nothing waiting (so no
slice ends). Runs on SQLite and on PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.suspension_support import (
    assert_whole_stream,
    held_back,
    marked_segments,
    model,
    read_stream,
    run_alone,
    running_stack,
    segments,
    settled_usage,
    submit,
    suspensions,
    task_rows,
    wait_ended,
)

pytestmark = pytest.mark.e2e

QUANTUM = 4
MODEL = "tiny-sliced"
BODIES = [
    {"model": MODEL, "prompt": "story number 2", "max_tokens": 40, "temperature": 0},
    {"model": MODEL, "prompt": "batch story 5", "max_tokens": 40, "temperature": 0.8, "seed": 5},
    {"model": MODEL, "prompt": "batch story 7", "max_tokens": 40, "temperature": 0.8, "seed": 7},
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_path):
    with isolated_platform_env(tmp_path_factory.mktemp("time-slicing")) as env:
        sliced = model(MODEL, "transformers", {"path": "TINY_PATH"}, time_slice_tokens=QUANTUM)
        with running_stack(env, tiny_model_path, slots=1, models=(sliced,)) as running:
            yield running


def test_three_generations_on_one_slot_take_turns_each_advancing_every_round(stack):
    with stack.client() as client:
        reference = [run_alone(client, [body])[0] for body in BODIES]
        for body in reference:
            # Long enough for several slices each.
            assert body["usage"]["completion_tokens"] >= 6 * QUANTUM, body

        with held_back(stack):  # all three wait before the first starts
            ids = [submit(client, body) for body in BODIES]

        async def scenario():
            return await asyncio.gather(*(read_stream(stack, task_id) for task_id in ids))

        streams = asyncio.run(scenario())
        ended = [wait_ended(client, task_id) for task_id in ids]
        usage = settled_usage(client)
        every_task = client.get("/api/v1/tasks", params={"page_size": 100}).json()["results"]

    rows = task_rows(stack, ids + [body["id"] for body in reference])
    for body in reference:
        assert (rows[body["id"]]["slices"], rows[body["id"]]["preemptions"]) == (0, 0)
    for done, expected, messages in zip(ended, reference, streams, strict=True):
        assert done["status"] == "succeeded", done
        assert (done["output"], done["usage"]) == (expected["output"], expected["usage"]), done["id"]
        assert_whole_stream(messages, done["output"])
        assert messages[-1]["usage"] == done["usage"]
        row = rows[done["id"]]
        assert (row["attempt"], row["preemptions"]) == (1, 0)
        assert row["slices"] >= 2, row
        suspended = [m for m in messages if m["type"] == "suspended"]
        assert suspended == [{"type": "suspended", "reason": "time_slice"}] * row["slices"]
        # Every segment streamed something: each turn advanced the generation.
        assert all(marked_segments(messages)), marked_segments(messages)

    # Round robin: between two turns of one generation, every other generation that
    # still had a turn to come had one too: none waited longer than one round.
    # (Counted from the first turn of the last to arrive: before it was submitted,
    # the first two took turns between themselves.)
    logged = [task_id for task_id in segments(stack.worker, MODEL) if task_id in ids]
    assert len(logged) == sum(rows[task_id]["slices"] + 1 for task_id in ids), logged
    order = logged[max(logged.index(task_id) for task_id in ids):]
    assert len(order) >= 2 * len(ids), logged  # at least two whole rounds of all three
    for task_id in ids:
        turns = [index for index, each in enumerate(order) if each == task_id]
        for this, following in zip(turns, turns[1:], strict=False):
            for other in ids:
                if other != task_id and other in order[following + 1:]:
                    assert other in order[this + 1:following], (task_id, other, order)
    # Each slice ran its quantum: a generation's tokens grew by at least QUANTUM per turn.
    for task_id in ids:
        tokens = [count for each, reason, count in suspensions(stack.worker) if each == task_id]
        assert len(tokens) == rows[task_id]["slices"]
        assert all(later - earlier >= QUANTUM for earlier, later in zip([0, *tokens], tokens, strict=False)), tokens

    # Charged once.
    assert usage["spent_tokens"] == sum(task["usage"]["total_tokens"] for task in every_task)
    assert usage["reserved_tokens"] == 0
