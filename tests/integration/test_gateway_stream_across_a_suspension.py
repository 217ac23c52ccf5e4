"""A /v1 stream whose task is suspended mid-way (preempted) and resumed goes on
as if nothing happened: every word once, in order, no error, ``[DONE]`` last
(a suspension is not a retry: no ``generation_restarted``)."""

from __future__ import annotations

import uuid

import pytest

from apps.tasks import suspension
from apps.tasks.models import Task
from tests.integration.gateway_support import COMPLETIONS, AsgiCall, sse_events
from tests.integration.suspension_support import SLOW_ECHO, WORDS, WorkerThread, slow_echo, streamed_some, wait_until

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_completion_stream_goes_on_across_a_suspension(acme_key, keeper):
    slow_echo()
    call = AsgiCall(acme_key, COMPLETIONS, {"model": SLOW_ECHO, "prompt": WORDS, "max_tokens": 100, "stream": True})
    status, headers = call.start()
    assert status == 200
    task_id = uuid.UUID(headers["x-task-id"])
    worker = WorkerThread(task_id, keeper)
    wait_until(streamed_some(task_id), "the task streamed a few words")
    assert suspension.request_suspend([task_id]) == [task_id]
    worker.join()
    assert Task.objects.get(pk=task_id).preemptions == 1
    WorkerThread(task_id, keeper).join()

    events = sse_events(call.read_to_end())

    assert events[-1] == "[DONE]"
    assert not any("error" in event for event in events[:-1])
    text = "".join(choice["text"] for event in events[:-1] for choice in event["choices"])
    assert text == WORDS
