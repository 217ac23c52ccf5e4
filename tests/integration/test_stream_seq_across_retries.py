"""A task's stream numbers its chunks from 1 and keeps counting across retries; a
``restart`` event tells the client where a new attempt begins (Contracts), so a
client resuming with ``?after=N`` misses nothing of the retry and repeats nothing.

The first attempt is a worker that streams some words and then fails with a
transient error, made with the worker's own calls (claim, publisher, release);
the second is the worker's code path on the echo model. The stream is read
through the real ASGI application.
"""

from __future__ import annotations

import uuid

import pytest

from apps.runtime.execution import execute_task
from apps.streaming.services import open_publisher
from apps.tasks import services
from tests.integration.stream_support import chunks, read_to_end

# The consumer reads the database from other threads: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PROMPT = "the second attempt streams every one of these words"
FIRST_ATTEMPT_TEXT = ["words of ", "a dying ", "first attempt "]


def _retried_task(api) -> uuid.UUID:
    """A succeeded task whose first attempt streamed FIRST_ATTEMPT_TEXT and then failed."""
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": PROMPT})
    assert created.status == 201, created.body
    task_id = uuid.UUID(created.body["id"])

    first = services.claim_task(task_id, "worker-that-fails")
    assert first is not None and first.attempt == 1
    publisher = open_publisher(first)
    for text in FIRST_ATTEMPT_TEXT:
        publisher.add(text)
    publisher.close()
    assert services.release_for_retry(first, "upstream returned 503")

    execute_task(task_id)
    return task_id


def test_seq_starts_at_one_and_counts_on_across_the_retry(acme_api, acme_key):
    task_id = _retried_task(acme_api)

    messages = read_to_end(task_id, key=acme_key)

    kinds = [message["type"] for message in messages]
    assert kinds.count("restart") == 1
    restart_at = kinds.index("restart")
    assert messages[restart_at] == {"type": "restart", "attempt": 2}
    before, after = chunks(messages[:restart_at]), chunks(messages[restart_at:])
    assert "".join(chunk["text"] for chunk in before) == "".join(FIRST_ATTEMPT_TEXT)
    assert "".join(chunk["text"] for chunk in after) == PROMPT
    assert [chunk["seq"] for chunk in before + after] == list(range(1, len(before) + len(after) + 1))
    assert messages[-1]["type"] == "done" and messages[-1]["status"] == "succeeded"


def test_resuming_after_the_first_attempts_last_chunk_gets_the_whole_retry(acme_api, acme_key):
    task_id = _retried_task(acme_api)
    everything = read_to_end(task_id, key=acme_key)
    restart_at = [message["type"] for message in everything].index("restart")
    last_seen = chunks(everything[:restart_at])[-1]["seq"]

    resumed = read_to_end(task_id, key=acme_key, after=last_seen)

    assert chunks(resumed) == chunks(everything[restart_at:])
    assert "".join(chunk["text"] for chunk in chunks(resumed)) == PROMPT
