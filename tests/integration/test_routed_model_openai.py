"""/v1 answers name the model that ran: a routed model's chosen candidate, in the
whole completion and in every chunk of a stream (the tenant asked for the router)."""

from __future__ import annotations

import json
import uuid

import pytest

from apps.runtime.execution import execute_task
from tests.integration.gateway_support import CHAT, AsgiCall, sse_events, submitted_task
from tests.routing_support import CHINESE, LENGTH_AND_LANGUAGE, SHORT_ENGLISH, echo_copies, make_router

# The gateway reads the database from other threads: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def translator() -> None:
    echo_copies("echo-short", "echo-long", "echo-zh")
    make_router("translator", LENGTH_AND_LANGUAGE)


def test_a_whole_completion_names_the_candidate(translator, acme, acme_key):
    call = AsgiCall(acme_key, CHAT, {"model": "translator", "messages": [{"role": "user", "content": CHINESE}]})
    execute_task(submitted_task(acme).id)

    status, _ = call.start()
    body = json.loads(call.read_to_end())

    assert status == 200, body
    assert body["model"] == "echo-zh"


def test_a_stream_names_the_candidate(translator, acme_key):
    call = AsgiCall(acme_key, CHAT, {"model": "translator", "stream": True,
                                     "messages": [{"role": "user", "content": SHORT_ENGLISH}]})
    task_id = call.start()[1]["x-task-id"]
    execute_task(uuid.UUID(task_id))

    chunks = [event for event in sse_events(call.read_to_end()) if event != "[DONE]"]

    assert chunks and {chunk["model"] for chunk in chunks} == {"echo-short"}
