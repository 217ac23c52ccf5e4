"""The transformers adapter's KV-cache budget on the real stack (issue 12): the
tiny model registered again with kv_cache_budget_bytes = 0 keeps no suspended
generation's KV cache, so every resume recomputes it from the prompt and the
tokens generated so far; the outputs still equal the uninterrupted runs.

Suspensions come from time slicing (two generations, one slot, a quantum of 4
tokens). Which path a resume took is the worker's own account: its debug log
line for each resume ("from its kept KV cache" or "by recomputing its KV
cache"); the same tiny model with the default budget, sliced the same way,
shows the kept path, so the line tells the two apart. Runs on SQLite and on
PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.suspension_support import (
    Stack,
    assert_whole_stream,
    held_back,
    model,
    read_stream,
    run_alone,
    running_stack,
    submit,
    task_rows,
    wait_ended,
)

pytestmark = pytest.mark.e2e

QUANTUM = 4
PROMPTS = [
    {"prompt": "story number 2", "max_tokens": 32, "temperature": 0},
    {"prompt": "batch story 7", "max_tokens": 32, "temperature": 0.8, "seed": 7},
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_path):
    with isolated_platform_env(tmp_path_factory.mktemp("kv-budget")) as env:
        models = (
            model("tiny-recompute", "transformers", {"path": "TINY_PATH", "kv_cache_budget_bytes": 0},
                  time_slice_tokens=QUANTUM),
            model("tiny-kept", "transformers", {"path": "TINY_PATH"}, time_slice_tokens=QUANTUM),
        )
        # The worker logs at debug level: the adapter says there which way each resume went.
        with running_stack(env, tiny_model_path, slots=1, worker_env={"LOG_LEVEL": "DEBUG"}, models=models) as running:
            yield running


def _sliced_run(stack: Stack, model_name: str) -> tuple[list[str], list[dict], list[list[dict]]]:
    """The prompts submitted together on ``model_name`` (one slot: they take turns);
    their ids, ends and streams."""
    with stack.client() as client:
        with held_back(stack):  # both wait before either starts: each gets slices
            ids = [submit(client, {"model": model_name, **body}) for body in PROMPTS]

        async def scenario():
            return await asyncio.gather(*(read_stream(stack, task_id) for task_id in ids))

        streams = asyncio.run(scenario())
        return ids, [wait_ended(client, task_id) for task_id in ids], streams


def _resume_paths(stack: Stack, task_id: str) -> list[str]:
    """How each resume of ``task_id`` rebuilt its state, from the worker's log."""
    lines = [line for line in stack.worker.log_text().splitlines() if f" resuming {task_id}:" in line]
    return ["kept" if "from its kept KV cache" in line else "recompute" if "by recomputing its KV cache" in line
            else line for line in lines]


def test_a_zero_kv_cache_budget_forces_the_recompute_path_and_the_outputs_still_equal(stack):
    with stack.client() as client:
        reference = [run_alone(client, [{"model": "tiny-recompute", **body}])[0] for body in PROMPTS]
    for body in reference:
        assert body["usage"]["completion_tokens"] >= 3 * QUANTUM, body  # long enough for a few slices

    kept_ids, kept_ends, _ = _sliced_run(stack, "tiny-kept")
    recomputed_ids, recomputed_ends, streams = _sliced_run(stack, "tiny-recompute")

    rows = task_rows(stack, kept_ids + recomputed_ids + [body["id"] for body in reference])
    for body in reference:
        assert rows[body["id"]]["slices"] == 0  # uninterrupted
    for ends in (kept_ends, recomputed_ends):
        for done, expected in zip(ends, reference, strict=True):
            assert done["status"] == "succeeded", done
            assert (done["output"], done["usage"]) == (expected["output"], expected["usage"]), done["id"]
            assert rows[done["id"]]["slices"] >= 1, rows[done["id"]]
    for messages, done in zip(streams, recomputed_ends, strict=True):
        assert_whole_stream(messages, done["output"])

    # With the default budget each resume found its KV cache kept; with none, each recomputed it.
    for task_id in kept_ids:
        assert _resume_paths(stack, task_id) == ["kept"] * rows[task_id]["slices"]
    for task_id in recomputed_ids:
        assert _resume_paths(stack, task_id) == ["recompute"] * rows[task_id]["slices"]
