"""A task's stream whose database goes away tells its client so and closes with
1013 (Try Again Later), naming the ?after=N to reconnect with — it does not
die silently or end the handshake with a server error.

The database's failure is the error a lost connection raises, from the reads
the stream makes (its status and its authorisation).
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from apps.streaming.consumers import TRY_AGAIN_LATER
from tests.integration.stream_support import opened, until_closed

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def _database_down(*args, **kwargs):
    raise OperationalError("server closed the connection unexpectedly (injected)")


class _DownStatusBoard:
    current = staticmethod(_database_down)


def _queued_task(api) -> str:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "hello"})  # no worker: it stays queued
    assert created.status == 201, created.body
    return created.body["id"]


def _assert_told_to_retry(communicator, handshake) -> None:
    assert handshake.accepted, handshake
    messages, code = until_closed(communicator)
    assert code == TRY_AGAIN_LATER == 1013
    assert messages[-1] == {
        "type": "error", "message": "the database is unavailable; reconnect later with ?after=0"
    }, messages


def test_an_open_stream_closes_with_try_again_later(acme_key, acme_api, monkeypatch):
    task = _queued_task(acme_api)
    monkeypatch.setattr("apps.streaming.consumers.status_board", lambda: _DownStatusBoard())

    _assert_told_to_retry(*opened(task, key=acme_key))


def test_a_stream_opened_meanwhile_is_told_to_retry(acme_key, acme_api, monkeypatch):
    task = _queued_task(acme_api)
    monkeypatch.setattr("apps.streaming.consumers.authorised_task", _database_down)

    _assert_told_to_retry(*opened(task, key=acme_key))
