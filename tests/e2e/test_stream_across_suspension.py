"""A task's WebSocket stream across a preemption, on the real stack (issue 12): a
reader connected throughout gets every chunk once, in order, with "suspended"
and "resumed" around the gap; a reader that drops at the suspension and
reconnects with ``?after=N`` while the task waits for its slot gets exactly
the rest.

One worker slot and echo models at a fixed pace (so the suspension lasts
while an interactive task of 24 words holds the slot); the order is taken from
the messages and the task's status, never from durations. Runs on SQLite and
on PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.suspension_support import (
    assert_whole_stream,
    auth,
    chunks,
    kinds,
    model,
    read_stream,
    running_stack,
    submit,
    task_rows,
    wait_ended,
)

pytestmark = pytest.mark.e2e

WORDS = " ".join(f"word{i}" for i in range(40))
URGENT = " ".join(f"urgent{i}" for i in range(24))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_path):
    with isolated_platform_env(tmp_path_factory.mktemp("suspended-stream"), PREEMPT_MIN_RUN_SECONDS="0") as env:
        # Preemption is among one model's tasks: both tasks run on it. The interactive
        # task's 24 words hold the slot for seconds, the reconnect's window.
        models = (model("echo-steady", "echo", {"words_per_second": 10}),)
        with running_stack(env, tiny_model_path, slots=1, models=models) as running:
            yield running


async def _status_once_not_running(client, task_id: str) -> str:
    for _ in range(600):
        status = client.get(f"/api/v1/tasks/{task_id}").json()["status"]
        if status != "running":
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} stayed running after its suspension")


def test_a_reader_across_a_suspension_and_one_reconnecting_in_the_middle_each_get_every_chunk_once(stack):
    with stack.client() as client:
        batch_id = submit(client, {"model": "echo-steady", "prompt": WORDS, "priority": "batch", "max_tokens": 100})

        async def scenario():
            streaming = asyncio.Event()
            whole = asyncio.create_task(read_stream(stack, batch_id, seen=streaming, chunks_before_seen=3))
            dropped: list[dict] = []
            async with websockets.connect(f"{stack.ws_url}/ws/tasks/{batch_id}/", **auth(stack)) as ws:
                await asyncio.wait_for(streaming.wait(), 60)
                # The batch task holds the only slot and streams: an interactive task outranks it.
                urgent_id = submit(client, {"model": "echo-steady", "prompt": URGENT, "priority": "interactive"})
                while not dropped or dropped[-1]["type"] != "suspended":
                    dropped.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            # Dropped at the suspension; the task is queued again (its row is written just after
            # the "suspended" message) and waits for its slot while the interactive one runs.
            waiting = await _status_once_not_running(client, batch_id)
            after = chunks(dropped)[-1]["seq"]
            rest = await read_stream(stack, batch_id, after=after)
            return urgent_id, await whole, dropped, waiting, after, rest

        urgent_id, whole, dropped, waiting, after, rest = asyncio.run(scenario())
        done = wait_ended(client, batch_id)
        urgent = wait_ended(client, urgent_id)

    assert (done["status"], done["output"]) == ("succeeded", WORDS)
    assert (urgent["status"], urgent["output"]) == ("succeeded", URGENT)
    assert done["usage"] == {"prompt_tokens": 40, "completion_tokens": 40, "total_tokens": 80}
    rows = task_rows(stack, [batch_id, urgent_id])
    assert (rows[batch_id]["preemptions"], rows[batch_id]["attempt"]) == (1, 1)
    assert rows[urgent_id]["preemptions"] == 0

    # Connected throughout: every chunk once, in order, the whole output; the gap marked.
    assert_whole_stream(whole, WORDS)
    assert [kind for kind in kinds(whole) if kind in ("suspended", "resumed")] == ["suspended", "resumed"]
    assert {"type": "suspended", "reason": "preempted"} in whole

    # Reconnected in the middle of the suspension (the task was queued again, not running):
    # the chunks after the last one it had, once each, then the resume and the end.
    assert waiting == "queued"
    assert 0 < after < len(chunks(whole))
    assert chunks(dropped) == chunks(whole)[:after]
    assert chunks(rest) == chunks(whole)[after:]
    assert [kind for kind in kinds(rest) if kind != "chunk"][-2:] == ["resumed", "done"]
    assert "".join(m["text"] for m in chunks(dropped) + chunks(rest)) == WORDS
