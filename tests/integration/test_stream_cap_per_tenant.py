"""A tenant may have at most MAX_STREAMS_PER_TENANT WebSocket streams open at once.

Through the real ASGI application: one stream past the cap is accepted and
closed at once with code 4429 after an error message saying why; closing a
stream frees its place; another tenant's streams are counted apart. The
count is kept in the database (apps.streaming.open_streams), so streams open
on other server processes count too, and those of a process that died stop
counting when their lease runs out.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.streaming.consumers import TOO_MANY_STREAMS
from apps.streaming.models import OpenStream
from apps.streaming.open_streams import open_stream
from tests.integration.stream_support import closed, opened, until_closed

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

CAP = 2


@pytest.fixture
def cap(settings) -> int:
    settings.MAX_STREAMS_PER_TENANT = CAP
    return CAP


def _task_of(api) -> str:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "hello"})
    assert created.status == 201, created.body
    return created.body["id"]


def _assert_refused_for_the_cap(communicator, handshake) -> None:
    assert handshake.accepted, handshake
    messages, code = until_closed(communicator)
    assert code == TOO_MANY_STREAMS == 4429
    assert messages[-1]["type"] == "error", messages
    assert "too many open streams" in messages[-1]["message"], messages


def test_one_stream_past_the_cap_is_closed_with_4429_and_a_closed_one_frees_its_place(
    cap, acme, acme_key, acme_api, globex_key, globex_api
):
    task = _task_of(acme_api)
    streams = [opened(task, key=acme_key) for _ in range(cap)]
    assert all(handshake.accepted for _, handshake in streams), streams

    _assert_refused_for_the_cap(*opened(task, key=acme_key))

    # Another tenant is counted apart.
    globex_stream, globex_handshake = opened(_task_of(globex_api), key=globex_key)
    assert globex_handshake.accepted

    # Closing one of acme's streams gives its place back.
    closed(streams[0][0])
    again, handshake = opened(task, key=acme_key)
    assert handshake.accepted

    for communicator in (again, streams[1][0], globex_stream):
        closed(communicator)
    assert not OpenStream.objects.filter(tenant=acme).exists()


def test_streams_open_on_other_processes_count_and_a_dead_ones_expire(cap, acme, acme_key, acme_api):
    task = _task_of(acme_api)
    # Another server process holds every place (what its consumers write).
    elsewhere = [open_stream(acme.pk, task) for _ in range(cap)]
    assert None not in elsewhere

    _assert_refused_for_the_cap(*opened(task, key=acme_key))

    # That process died: its leases, no longer renewed, run out.
    OpenStream.objects.filter(pk__in=elsewhere).update(expires_at=timezone.now() - timedelta(seconds=1))
    communicator, handshake = opened(task, key=acme_key)
    assert handshake.accepted
    closed(communicator)
