"""A /v1 client that goes away before the end cancels its task, at once, unless
the request said ``X-Keep-On-Disconnect: true``. (That the worker then stops
and the charge is the tokens produced: tests/e2e/test_openai_sdk.py.)

Through the real ASGI application: the disconnect is the ASGI server's
``http.disconnect``, on which Django cancels the view or closes the stream.
"""

from __future__ import annotations

import uuid

import pytest

from apps.streaming.services import open_publisher
from apps.tasks import services
from apps.tasks.models import Task
from tests.integration.gateway_support import CHAT, COMPLETIONS, AsgiCall, sse_events, submitted_task

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

CHAT_BODY = {"model": "echo", "messages": [{"role": "user", "content": "one two three four"}]}


def test_leaving_a_stream_before_the_task_starts_cancels_it(acme_key):
    call = AsgiCall(acme_key, CHAT, {**CHAT_BODY, "stream": True})
    task_id = call.start()[1]["x-task-id"]
    assert sse_events(call.read())[0]["choices"][0]["delta"]["role"] == "assistant"

    call.disconnect()

    task = Task.objects.get(pk=task_id)
    assert (task.state, task.error_code) == ("cancelled", "cancelled")
    assert task.usage is None  # it never ran: nothing to charge


def test_leaving_a_stream_mid_generation_stops_the_running_task(acme_key):
    call = AsgiCall(acme_key, COMPLETIONS, {"model": "echo", "prompt": "one two three", "stream": True})
    task_id = call.start()[1]["x-task-id"]
    running = services.claim_task(uuid.UUID(task_id), "a-worker")
    assert running is not None
    publisher = open_publisher(running)
    publisher.add("one ")
    publisher.close()
    assert call.read().startswith(b":")  # a text completion's stream opens with a comment
    assert sse_events(call.read())[0]["choices"][0]["text"] == "one "

    call.disconnect()

    task = Task.objects.get(pk=task_id)
    # The worker is asked to stop; it ends the task cancelled, charging what it made.
    assert (task.state, task.cancel_requested) == ("running", True)


def test_leaving_a_whole_completion_before_its_end_cancels_it(acme, acme_key):
    call = AsgiCall(acme_key, CHAT, CHAT_BODY)
    task = submitted_task(acme)

    call.disconnect()

    task.refresh_from_db()
    assert task.state == "cancelled"


@pytest.mark.parametrize("stream", [True, False])
def test_leaving_at_once_leaves_no_task_behind(acme, acme_key, stream):
    call = AsgiCall(acme_key, CHAT, {**CHAT_BODY, "stream": stream})

    # Wherever it lands (before the submission, during it, before the stream's
    # first byte), the disconnect leaves no task to run for nobody.
    call.disconnect()

    assert [task.state for task in Task.objects.for_tenant(acme)] in ([], ["cancelled"])


@pytest.mark.parametrize("stream", [True, False])
def test_a_request_that_asks_to_keep_its_task_keeps_it(acme, acme_key, stream):
    call = AsgiCall(acme_key, CHAT, {**CHAT_BODY, "stream": stream}, **{"X-Keep-On-Disconnect": "true"})
    if stream:
        call.start()
    task = submitted_task(acme)

    call.disconnect()

    task.refresh_from_db()
    assert (task.state, task.cancel_requested) == ("queued", False)


def test_the_keep_header_takes_true_or_false_only(acme_api):
    refused = acme_api.post(CHAT, CHAT_BODY, **{"X-Keep-On-Disconnect": "yes"})

    assert refused.status == 400, refused.body
    assert refused.body["error"]["param"] == "X-Keep-On-Disconnect"
    assert Task.objects.count() == 0
