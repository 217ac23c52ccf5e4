"""An openai_compatible task is never preempted (issue 12): its adapter declares it
cannot suspend, so an interactive task waiting behind a worker full of its batch
generations waits for a slot to free instead. The same scene on echo (which can
suspend) on the same platform preempts, so the settings here do preempt.

The remote server is the outside world: a local OpenAI-compatible stub process
(tests/stubs/openai_stub.py, "slow" mode: one word every 0.05 s). The order is
read from the task rows and the streams, never from durations. Runs on SQLite
and on PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.suspension_support import (
    Stack,
    assert_whole_stream,
    kinds,
    model,
    read_stream,
    running_stack,
    submit,
    task_rows,
    wait_ended,
)
from tests.stubs.openai_stub import serve_openai_stub

pytestmark = pytest.mark.e2e

SLOTS = 2
WORDS = " ".join(f"word{i}" for i in range(30))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_path):
    base = tmp_path_factory.mktemp("remote-not-preempted")
    with serve_openai_stub(base / "stub.log") as stub_url, \
            isolated_platform_env(base, PREEMPT_MIN_RUN_SECONDS="0") as env:
        remote = model("remote", "openai_compatible",
                       {"base_url": stub_url, "model": f"slow:{uuid.uuid4().hex[:8]}", "retry_backoff": 0.01})
        echo = model("echo-paced", "echo", {"words_per_second": 20})
        with running_stack(env, tiny_model_path, slots=SLOTS, models=(remote, echo)) as running:
            yield running


def _full_worker_then_urgent(stack: Stack, model_name: str) -> tuple[list[str], str, list[list[dict]]]:
    """SLOTS batch tasks fill the worker and stream; then an interactive task of the same
    model arrives. Every task's id, the batch streams, once all ended."""
    with stack.client() as client:
        async def scenario():
            started = [asyncio.Event() for _ in range(SLOTS)]
            batch = [submit(client, {"model": model_name, "prompt": WORDS, "priority": "batch"}) for _ in started]
            readers = [
                asyncio.create_task(read_stream(stack, task_id, seen=event, chunks_before_seen=2))
                for task_id, event in zip(batch, started, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 60)
            urgent = submit(client, {"model": model_name, "prompt": "urgent words", "priority": "interactive"})
            return batch, urgent, await asyncio.gather(*readers)

        batch, urgent, streams = asyncio.run(scenario())
        for task_id in [*batch, urgent]:
            done = wait_ended(client, task_id)
            assert done["status"] == "succeeded", done
        for task_id, messages in zip(batch, streams, strict=True):
            assert_whole_stream(messages, client.get(f"/api/v1/tasks/{task_id}").json()["output"])
    return batch, urgent, streams


def test_a_remote_models_generations_are_never_preempted(stack):
    # The control: on echo the interactive task takes a batch task's slot.
    echo_batch, echo_urgent, echo_streams = _full_worker_then_urgent(stack, "echo-paced")
    rows = task_rows(stack, [*echo_batch, echo_urgent])
    assert sum(rows[task_id]["preemptions"] for task_id in echo_batch) >= 1, rows
    assert any("suspended" in kinds(messages) for messages in echo_streams)

    remote_batch, remote_urgent, remote_streams = _full_worker_then_urgent(stack, "remote")
    rows = task_rows(stack, [*remote_batch, remote_urgent])
    for task_id, messages in zip(remote_batch, remote_streams, strict=True):
        assert (rows[task_id]["preemptions"], rows[task_id]["slices"]) == (0, 0), rows[task_id]
        assert "suspended" not in kinds(messages) and "resumed" not in kinds(messages)
    # The interactive task waited for a slot to free: it started once a batch task had ended.
    first_end = min(rows[task_id]["finished_at"] for task_id in remote_batch)
    assert rows[remote_urgent]["started_at"] >= first_end, rows
