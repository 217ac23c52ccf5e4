"""A task's WebSocket stream opens only for the task's own tenant: another tenant's
API key, or a stream token another tenant was given, is refused at the handshake
exactly as a missing task is (Contracts: "refused alike", HTTP 403).

Each test first opens the stream with the right credentials, so a refusal below
cannot come from a stream that refuses everyone.
"""

from __future__ import annotations

import uuid

import pytest

from tests.integration.stream_support import handshake

# The handshake's auth reads the database from another thread: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _task(api) -> str:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "for my tenant's eyes only"})
    assert created.status == 201, created.body
    return created.body["id"]


def _stream_token(api, task_id: str) -> str:
    issued = api.post(f"/api/v1/tasks/{task_id}/stream-token")
    assert issued.status == 200, issued.body
    return issued.body["token"]


def test_another_tenants_key_is_refused_like_a_missing_task(acme_api, acme_key, globex_key):
    task_id = _task(acme_api)
    assert handshake(task_id, key=acme_key).accepted

    missing = handshake(uuid.uuid4(), key=globex_key)
    foreign = handshake(task_id, key=globex_key)

    assert not missing.accepted
    assert foreign == missing


def test_a_stream_token_of_another_tenants_task_is_refused_like_a_missing_task(acme_api, globex_api):
    acme_task = _task(acme_api)
    globex_task = _task(globex_api)
    globex_token = _stream_token(globex_api, globex_task)
    assert handshake(globex_task, stream_token=globex_token).accepted

    missing = handshake(uuid.uuid4(), stream_token=globex_token)
    foreign = handshake(acme_task, stream_token=globex_token)

    assert not missing.accepted
    assert foreign == missing
