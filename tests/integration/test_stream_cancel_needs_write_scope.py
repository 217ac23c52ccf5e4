"""A stream's client may cancel its task only when its key — for a stream token,
the key that issued it — has ``tasks:write`` (Contracts, WebSocket stream)."""

from __future__ import annotations

import json
import uuid

import pytest

from apps.tasks.models import Task, TaskState
from apps.tenants.models import Scope
from apps.tenants.services import issue_api_key
from tests.conftest import ApiClient
from tests.integration.stream_support import SILENCE_LIMIT_SECONDS, _communicator, on_stream_loop

# The consumer reads the database from another thread: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _send_cancel(task_id: uuid.UUID | str, *, key: str | None = None, stream_token: str | None = None) -> list[dict]:
    """Open the stream, send {"type": "cancel"}, and return what came back before it went quiet."""

    async def run() -> list[dict]:
        communicator = _communicator(task_id, key=key, stream_token=stream_token)
        accepted, _ = await communicator.connect(timeout=SILENCE_LIMIT_SECONDS)
        assert accepted
        await communicator.send_to(text_data=json.dumps({"type": "cancel"}))
        received = []
        # Until it has been quiet for a second: the answer (if any) is in.
        while not await communicator.receive_nothing(timeout=1.0):
            output = await communicator.receive_output(timeout=SILENCE_LIMIT_SECONDS)
            if output["type"] != "websocket.send":
                break  # closed
            received.append(json.loads(output["text"]))
        await communicator.disconnect(timeout=SILENCE_LIMIT_SECONDS)
        return received

    return on_stream_loop(run())


def _queued_task(api: ApiClient) -> str:
    # A model no worker runs in this test: the task stays queued, so only a cancel moves it.
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "wait for me"})
    assert created.status == 201, created.body
    return created.body["id"]


def test_a_read_only_key_cannot_cancel_from_the_stream(acme, acme_key):
    reader = issue_api_key(acme, name="reads only", scopes=[Scope.TASKS_READ]).secret
    task_id = _queued_task(ApiClient(acme_key))

    messages = _send_cancel(task_id, key=reader)

    assert any(m["type"] == "error" and "tasks:write" in m["message"] for m in messages), messages
    assert Task.objects.get(pk=task_id).state == TaskState.QUEUED


def test_a_stream_token_of_a_read_only_key_cannot_cancel(acme, acme_key):
    reader = ApiClient(issue_api_key(acme, name="browser backend", scopes=[Scope.TASKS_READ]).secret)
    task_id = _queued_task(ApiClient(acme_key))
    token = reader.post(f"/api/v1/tasks/{task_id}/stream-token").body["token"]

    _send_cancel(task_id, stream_token=token)

    assert Task.objects.get(pk=task_id).state == TaskState.QUEUED


def test_a_key_with_write_scope_cancels_from_the_stream(acme, acme_key):
    task_id = _queued_task(ApiClient(acme_key))

    _send_cancel(task_id, key=acme_key)

    assert Task.objects.get(pk=task_id).state == TaskState.CANCELLED
