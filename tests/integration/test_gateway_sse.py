"""/v1 answers in OpenAI's shapes: server-sent events of chat.completion.chunk /
text_completion objects ending with ``data: [DONE]`` (``stream: true``), or one
object; the id is the task's, the usage the task's recorded usage.

Through the real ASGI application (the gateway reads the task through the
process's stream hub); the task is run by the worker's own code.
"""

from __future__ import annotations

import json
import uuid

import pytest

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.streaming.services import open_publisher
from apps.tasks import services
from apps.tasks.models import Task
from tests.integration.gateway_support import CHAT, COMPLETIONS, AsgiCall, sse_events, submitted_task

# The gateway reads the database from other threads: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PROMPT = "the quick brown fox jumps over the lazy dog"
MESSAGES = [{"role": "user", "content": PROMPT}]


def _ran(task_id: str) -> Task:
    execute_task(uuid.UUID(task_id))
    return Task.objects.get(pk=task_id)


def _assert_same_completion(chunks: list[dict], task_id: str, object_name: str, model: str = "echo") -> None:
    for chunk in chunks:
        assert (chunk["id"], chunk["object"], chunk["model"]) == (task_id, object_name, model), chunk
        assert chunk["created"] == chunks[0]["created"]


def test_a_streamed_chat_completion(acme_key):
    call = AsgiCall(acme_key, CHAT, {"model": "echo", "messages": MESSAGES, "stream": True,
                                     "stream_options": {"include_usage": True}})
    status, headers = call.start()
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-request-id"]
    task_id = headers["x-task-id"]
    assert uuid.UUID(task_id)

    task = _ran(task_id)
    events = sse_events(call.read_to_end())

    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    _assert_same_completion(chunks, task_id, "chat.completion.chunk")
    opening, *texts, closing, usage = chunks
    assert opening["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert texts and all(chunk["choices"][0]["finish_reason"] is None for chunk in texts)
    assert "".join(chunk["choices"][0]["delta"]["content"] for chunk in texts) == PROMPT
    assert closing["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    # include_usage: every chunk says "usage": null, then one more with the usage and no choices.
    assert all(chunk["usage"] is None for chunk in [opening, *texts, closing])
    assert usage["choices"] == []
    assert task.state == "succeeded"
    assert usage["usage"] == task.usage == {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}
    assert opening["service_tier"] == "default"


def test_a_streamed_completion_stopped_by_max_tokens(acme_key):
    call = AsgiCall(acme_key, COMPLETIONS, {"model": "echo", "prompt": PROMPT, "max_tokens": 3, "stream": True})
    task_id = call.start()[1]["x-task-id"]

    task = _ran(task_id)
    events = sse_events(call.read_to_end())

    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    _assert_same_completion(chunks, task_id, "text_completion")
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == "the quick brown "
    assert chunks[-1]["choices"] == [{"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}]
    assert not any("usage" in chunk for chunk in chunks)  # not asked for
    assert task.completion_tokens == 3


def test_a_whole_chat_completion(acme, acme_key):
    call = AsgiCall(acme_key, CHAT, {"model": "echo", "messages": MESSAGES, "service_tier": "flex"})
    task = _ran(str(submitted_task(acme).id))

    status, headers = call.start()
    body = json.loads(call.read_to_end())

    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-task-id"] == str(task.id)
    assert body == {
        "id": str(task.id),
        "object": "chat.completion",
        "created": int(task.created_at.timestamp()),
        "model": "echo",
        "service_tier": "flex",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": PROMPT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": task.usage,
    }


def test_a_whole_completion(acme, acme_key):
    call = AsgiCall(acme_key, COMPLETIONS, {"model": "echo", "prompt": PROMPT, "max_tokens": 4})
    task = _ran(str(submitted_task(acme).id))

    status, _ = call.start()
    body = json.loads(call.read_to_end())

    assert status == 200
    assert (body["id"], body["object"]) == (str(task.id), "text_completion")
    assert body["choices"] == [
        {"index": 0, "text": "the quick brown fox ", "logprobs": None, "finish_reason": "length"}
    ]
    assert body["usage"] == task.usage == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


@pytest.fixture
def broken_model(db) -> str:
    """A model whose adapter config cannot load: its tasks fail (model_unavailable)."""
    LLMModel.objects.create(name="broken", adapter="echo", is_public=True, adapter_config={"words_per_second": -1})
    return "broken"


def test_a_failed_task_is_an_error_event_or_a_500_not_retried(acme, acme_key, broken_model):
    streamed = AsgiCall(acme_key, CHAT, {"model": broken_model, "messages": MESSAGES, "stream": True})
    _ran(streamed.start()[1]["x-task-id"])
    events = sse_events(streamed.read_to_end())

    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert set(events[-1]) == {"error"}  # the SDKs raise on it; no [DONE] follows
    assert (events[-1]["error"]["type"], events[-1]["error"]["code"]) == ("server_error", "model_unavailable")

    Task.objects.all().delete()
    whole = AsgiCall(acme_key, COMPLETIONS, {"model": broken_model, "prompt": "hi"})
    _ran(str(submitted_task(acme).id))
    status, headers = whole.start()
    body = json.loads(whole.read_to_end())

    assert status == 500
    assert headers["x-should-retry"] == "false"  # the platform retried already; a retry is a new task
    assert (body["error"]["type"], body["error"]["code"]) == ("server_error", "model_unavailable")


def _first_attempt_fails(task_id: str) -> None:
    """An attempt that streams some text, then fails with a transient error (retried)."""
    first = services.claim_task(uuid.UUID(task_id), "worker-that-fails")
    assert first is not None
    publisher = open_publisher(first)
    publisher.add("words of a dying attempt ")
    publisher.close()
    assert services.release_for_retry(first, "upstream returned 503")


def test_a_whole_completion_holds_only_the_attempt_that_succeeded(acme, acme_key):
    call = AsgiCall(acme_key, CHAT, {"model": "echo", "messages": MESSAGES})
    task_id = str(submitted_task(acme).id)
    _first_attempt_fails(task_id)
    _ran(task_id)

    body = json.loads(call.read_to_end() if call.start()[0] == 200 else b"{}")

    assert body["choices"][0]["message"]["content"] == PROMPT


def test_a_stream_that_cannot_take_back_sent_text_ends_with_an_error(acme_key):
    call = AsgiCall(acme_key, CHAT, {"model": "echo", "messages": MESSAGES, "stream": True})
    task_id = call.start()[1]["x-task-id"]
    _first_attempt_fails(task_id)
    second = services.claim_task(uuid.UUID(task_id), "worker-that-retries")
    assert second is not None and second.attempt == 2
    open_publisher(second)  # the retry begins: a restart event

    events = sse_events(call.read_to_end())

    assert events[1]["choices"][0]["delta"] == {"content": "words of a dying attempt "}
    assert set(events[-1]) == {"error"}
    assert events[-1]["error"]["code"] == "generation_restarted"
    assert task_id in events[-1]["error"]["message"]
    # The client cannot have the rest from this stream: as on a disconnect, the task is cancelled.
    assert Task.objects.get(pk=task_id).cancel_requested
