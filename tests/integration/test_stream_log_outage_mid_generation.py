"""Redis going away mid-generation (distributed mode) does not fail the attempt: the
chunks the stream log could not take are kept and written once it is back, in order;
if it stays down the generation goes on and the result is recorded in the database
(stream readers take the end from there); a newer attempt's fence still stops the old
one. The outage is real: the log's Redis client is pointed at a port nothing listens on.

The Redis stream log exists on the distributed back end only: without REDIS_URL these
tests are skipped (the database log writes in the worker's own transaction)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from django.conf import settings

from apps.catalog.adapters import GenerationRequest, ModelAdapter, TextChunk, Usage
from apps.runtime import execution
from apps.runtime.execution import execute_task
from apps.streaming.events import CHUNK
from apps.streaming.log import RedisStreamLog
from apps.streaming.publisher import StreamPublisher
from apps.streaming.services import open_publisher
from apps.tasks import services
from apps.tasks.fencing import StaleAttempt
from apps.tasks.models import Task, TaskState
from apps.tasks.payloads import read_output
from tests.integration.stream_support import on_stream_loop

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.parametrize("stream_log_backend", ["redis"], indirect=True),
]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free again once closed: nothing listens there


class _Probe:
    """A stream key of the log's writer (weakly referenced, hence a class)."""


class Outage:
    """Redis away for the stream log, then back: its writes go to a closed port meanwhile."""

    def __init__(self, log: RedisStreamLog, monkeypatch) -> None:
        self._log = log
        self._monkeypatch = monkeypatch
        self._up = log._sync
        self._down = redis.Redis.from_url(f"redis://127.0.0.1:{_closed_port()}/0", **settings.REDIS_CLIENT_OPTIONS)

    def begin(self) -> None:
        self.writes_answered()  # what was written before the outage is in
        self._monkeypatch.setattr(self._log, "_sync", self._down)

    def end(self) -> None:
        self._monkeypatch.setattr(self._log, "_sync", self._up)

    def writes_answered(self) -> None:
        """Wait until every write submitted so far has answered: the log's writer takes
        them in the order submitted, so a write submitted now answers after them."""
        self._log.submit(uuid.uuid4(), [], stream=_Probe()).exception()


@pytest.fixture
def outage(stream_log_backend, monkeypatch, settings) -> Outage:
    settings.STREAM_COALESCE_SECONDS = 0  # each chunk is its own write
    return Outage(stream_log_backend, monkeypatch)


def _claimed(api, prompt: str = "outage") -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    task = services.claim_task(uuid.UUID(created.body["id"]), "worker-a")
    assert task is not None
    return task


def _chunks(log: RedisStreamLog, task_id: uuid.UUID) -> list[tuple[int, str]]:
    cipher = Task.objects.select_related("tenant").get(pk=task_id).tenant.cipher
    return [
        (event.seq, cipher.decrypt_json(event.payload)["text"])
        for _, event in on_stream_loop(log.read_all(task_id)) if event.kind == CHUNK
    ]


def test_chunks_made_while_the_log_is_down_are_written_once_it_is_back(acme_api, stream_log_backend, outage):
    task = _claimed(acme_api)
    publisher = open_publisher(task)
    publisher.add("before ")

    outage.begin()
    publisher.add("during ")
    outage.writes_answered()  # refused: the log is down
    publisher.add("still down ")  # the refusal is seen here, and kept: no error
    assert publisher.unwritten == 2
    outage.end()
    publisher.add("after")
    publisher.close()

    assert publisher.unwritten == 0
    assert _chunks(stream_log_backend, task.pk) == [(1, "before "), (2, "during "), (3, "still down "), (4, "after")]


class OutageMidStream(ModelAdapter):
    """A model whose stream outlives the stream log: it goes down after the first word."""

    name = "outage-mid-stream"

    def __init__(self, log_goes_down: Callable[[], None]) -> None:
        super().__init__({}, {})
        self._log_goes_down = log_goes_down

    def stream(self, request: GenerationRequest) -> Iterator[TextChunk | Usage]:
        yield TextChunk("one ")
        self._log_goes_down()
        yield TextChunk("two ")
        yield TextChunk("three")
        yield Usage(prompt_tokens=1, completion_tokens=3)


def test_the_result_is_recorded_while_the_log_stays_down(acme_api, stream_log_backend, outage, monkeypatch):
    engine = OutageMidStream(outage.begin)
    monkeypatch.setattr(execution, "adapter_for", lambda model, version=None: engine)
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "one two three"})
    assert created.status == 201, created.body

    execute_task(uuid.UUID(created.body["id"]))

    outage.end()
    task = Task.objects.select_related("tenant").get(pk=created.body["id"])
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 1)
    assert read_output(task) == "one two three"
    assert _chunks(stream_log_backend, task.pk) == [(1, "one ")]  # the rest never reached the log


def _overtaken(old: Task) -> Task:
    """Attempt ``old`` lost its lease; the next attempt began on another worker (its fence)."""
    requeued, _ = services.reap_expired_leases(now=old.lease_expires_at + timedelta(seconds=1))
    assert [t.pk for t in requeued] == [old.pk]
    new = services.claim_task(old.pk, "worker-b")
    assert new is not None and new.attempt == old.attempt + 1
    open_publisher(new).close()
    return new


def test_a_fenced_attempt_still_stops_after_an_outage(acme_api, stream_log_backend, outage):
    old = _claimed(acme_api)
    late: StreamPublisher = open_publisher(old)
    late.add("from attempt one ")
    outage.begin()
    late.add("kept while down ")
    outage.writes_answered()
    outage.end()
    _overtaken(old)

    with pytest.raises(StaleAttempt):
        late.add("more from attempt one")
        late.close()  # the kept chunks are tried again: refused for the newer attempt

    assert _chunks(stream_log_backend, old.pk) == [(1, "from attempt one ")]
