"""One access line per WebSocket session, through the real ASGI application
(llmagentos.access_log): path, tenant, whether it was accepted, close code,
duration and the messages sent; never the key or the stream token."""

from __future__ import annotations

import uuid

import pytest

from apps.runtime.execution import execute_task
from tests.integration.log_support import captured_log
from tests.integration.stream_support import handshake, read_to_end

# The consumer reads the database from other threads: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _ended_task(api) -> str:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "a stream to read"})
    assert created.status == 201, created.body
    execute_task(uuid.UUID(created.body["id"]))
    return created.body["id"]


def test_a_session_gets_one_line_with_its_close_code_and_messages(acme_api, acme_key):
    task_id = _ended_task(acme_api)

    with captured_log("json") as log:
        messages = read_to_end(task_id, key=acme_key)

    [line] = log.access_lines()
    assert line["duration_ms"] >= 0 and line["request_id"]
    assert {name: line[name] for name in ("kind", "path", "accepted", "close_code", "messages_sent", "tenant")} == {
        "kind": "websocket", "path": f"/ws/tasks/{task_id}/", "accepted": True, "close_code": 1000,
        "messages_sent": len(messages), "tenant": "acme",
    }
    assert messages[-1]["type"] == "done"
    assert acme_key not in log.text()


def test_a_browser_session_names_the_tenant_of_its_stream_token(acme_api):
    task_id = _ended_task(acme_api)
    token = acme_api.post(f"/api/v1/tasks/{task_id}/stream-token").body["token"]

    with captured_log("json") as log:
        read_to_end(task_id, stream_token=token)

    [line] = log.access_lines()
    assert (line["tenant"], line["accepted"]) == ("acme", True)
    assert token not in log.text()


def test_a_refused_handshake_is_logged_as_refused(acme_api, globex_key):
    task_id = _ended_task(acme_api)

    with captured_log("json") as log:
        assert not handshake(task_id, key=globex_key).accepted

    [line] = log.access_lines()
    assert (line["accepted"], line["messages_sent"], line["tenant"]) == (False, 0, "globex")
