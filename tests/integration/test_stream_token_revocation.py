"""A stream token is bound to the API key that issued it: revoking that key ends
the token, even within its 5 minutes (Contracts, WebSocket stream auth), and
ends the streams already open with it or with the key itself, within about a
second (apps.streaming.revocations): an error message, then close code 4401.
"""

from __future__ import annotations

import json

import pytest

from apps.tenants.services import issue_api_key, revoke_api_key
from tests.conftest import ApiClient
from tests.integration.stream_support import (
    SILENCE_LIMIT_SECONDS,
    closed,
    handshake,
    on_stream_loop,
    opened,
    until_closed,
)

# The handshake's auth reads the database from another thread: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_revoking_the_issuing_key_ends_its_stream_tokens(acme, acme_key):
    browser_backend = issue_api_key(acme, name="issues stream tokens")
    api = ApiClient(browser_backend.secret)
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "watched from a browser"})
    assert created.status == 201, created.body
    task_id = created.body["id"]
    token = api.post(f"/api/v1/tasks/{task_id}/stream-token").body["token"]
    assert handshake(task_id, stream_token=token).accepted

    revoke_api_key(browser_backend.api_key)

    assert not handshake(task_id, stream_token=token).accepted
    # The tenant's other keys are untouched: the task's stream itself is still open to them.
    assert handshake(task_id, key=acme_key).accepted


def _queued_task(api: ApiClient) -> str:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "watched live"})
    assert created.status == 201, created.body
    return created.body["id"]


def test_revoking_a_key_closes_the_streams_it_holds_open(acme, acme_key):
    revoked = issue_api_key(acme, name="about to be revoked")
    task_id = _queued_task(ApiClient(revoked.secret))
    token = ApiClient(revoked.secret).post(f"/api/v1/tasks/{task_id}/stream-token").body["token"]
    by_key, _ = opened(task_id, key=revoked.secret)
    by_token, _ = opened(task_id, stream_token=token)
    other, accepted = opened(task_id, key=acme_key)
    assert accepted.accepted

    revoke_api_key(revoked.api_key)

    for communicator in (by_key, by_token):
        messages, code = until_closed(communicator)
        assert code == 4401
        assert messages[-1] == {"type": "error", "message": "the key that opened this stream was revoked"}
    # The stream opened with another key goes on: what it has been sent, and the next
    # status update (sent every second while the task waits), hold no error and no close.
    assert all(message["type"] == "status" for message in _sent_so_far_and_next(other))
    closed(other)


def _sent_so_far_and_next(communicator) -> list[dict]:
    async def read() -> list[dict]:
        outputs = []
        while not communicator.output_queue.empty():
            outputs.append(communicator.output_queue.get_nowait())
        outputs.append(await communicator.receive_output(timeout=SILENCE_LIMIT_SECONDS))
        assert all(output["type"] == "websocket.send" for output in outputs), outputs
        return [json.loads(output["text"]) for output in outputs]

    return on_stream_loop(read())
