"""At run time a routed task whose attempts on its candidate all fail transiently (its
retries used up) goes on to the router's next candidate instead of failing: queued
again on that model, its attempts counting on, its stream showing a ``restart`` with
the seq unbroken, and charged what ran. Candidates the tenant may not use and those it
already ran on are left out; with none left it fails ``retries_exhausted`` as any task.
A permanent error (bad input) never falls back. On both stream log back ends.

The worker's own code path (``execute_task``) runs every attempt; the failing candidate
is a model whose adapter streams a few words and then fails, as an overloaded upstream
does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from apps.catalog.adapters import AdapterError, GenerationRequest, ModelAdapter, TextChunk, Usage
from apps.runtime import adapters as runtime_adapters
from apps.runtime.execution import execute_task
from apps.streaming.events import client_message
from apps.streaming.log import StreamLog
from apps.tasks import payloads
from apps.tasks.models import Task, TaskState
from apps.tenants.models import TaskCharge
from tests.integration.stream_support import chunks, on_stream_loop
from tests.routing_support import TASKS, echo_copies, make_router, submit

# The stream log is read from another thread (as a server does): rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PROMPT = "the next candidate answers every one of these words"
PARTIAL = "half an answer "


class FailingModel(ModelAdapter):
    """A candidate that streams a few words, then fails: transiently (an overloaded
    upstream, worth another try) unless ``permanent`` (the model refused the input)."""

    name = "failing"

    def __init__(self, permanent: bool = False) -> None:
        super().__init__({}, {})
        self.permanent = permanent
        self.calls = 0

    def stream(self, request: GenerationRequest) -> Iterator[TextChunk | Usage]:
        self.calls += 1
        yield TextChunk(PARTIAL)
        raise AdapterError("upstream overloaded" if not self.permanent else "prompt rejected", permanent=self.permanent)


@pytest.fixture
def failing(monkeypatch):
    """Make the named models fail (every attempt); the others run their real adapter."""

    def install(names: set[str], permanent: bool = False) -> FailingModel:
        broken = FailingModel(permanent)
        real = runtime_adapters.adapter_for
        monkeypatch.setattr(
            "apps.runtime.execution.adapter_for",
            lambda model, version=None: broken if model.name in names else real(model, version),
        )
        return broken

    return install


def _messages(log: StreamLog, task: Task) -> list[dict]:
    """The task's stream as a client is sent it, from the log the worker wrote."""
    cipher = task.tenant.cipher
    return [client_message(cipher, event) for _, event in on_stream_loop(log.read_all(task.pk))]


def _run_to_end(task_id: uuid.UUID) -> Task:
    """Run the task's attempts, one after another, as workers would, until it ends."""
    for _ in range(4 * settings.TASK_MAX_ATTEMPTS):
        execute_task(task_id)
        task = Task.objects.select_related("model", "tenant").get(pk=task_id)
        if task.is_terminal:
            return task
    raise AssertionError("the task never ended")


def test_a_transiently_failing_candidate_falls_back_to_the_next(acme, acme_api, failing,
                                                                stream_log_backend):
    echo_copies("echo-a", "echo-b")
    make_router("flaky-first", {"candidates": ["echo-a", "echo-b"]})
    broken = failing({"echo-a"})
    created = submit(acme_api, "flaky-first", PROMPT)
    assert created["routed_to"] == "echo-a"

    task = _run_to_end(uuid.UUID(created["id"]))

    limit = settings.TASK_MAX_ATTEMPTS
    assert broken.calls == limit  # every attempt allowed on echo-a, then echo-b
    assert (task.state, task.model.name, task.attempt) == (TaskState.SUCCEEDED, "echo-b", limit + 1)
    assert task.fallbacks == [{"model": "echo-a", "attempts": limit}]
    assert payloads.read_output(task) == PROMPT
    shown = acme_api.get(f"{TASKS}/{task.pk}").body
    assert (shown["model"], shown["routed_to"], shown["status"]) == ("flaky-first", "echo-b", "succeeded")

    messages = _messages(stream_log_backend, task)
    restarts = [message for message in messages if message["type"] == "restart"]
    assert restarts == [{"type": "restart", "attempt": n} for n in range(2, limit + 2)]
    last_restart = messages.index(restarts[-1])
    assert "".join(chunk["text"] for chunk in chunks(messages[:last_restart])) == PARTIAL * limit
    assert "".join(chunk["text"] for chunk in chunks(messages[last_restart:])) == PROMPT
    assert [chunk["seq"] for chunk in chunks(messages)] == list(range(1, len(chunks(messages)) + 1))
    assert messages[-1]["type"] == "done" and messages[-1]["status"] == "succeeded"

    # The charge is what ran: echo-b's usage (echo's: a word is a token); the failed attempts recorded none.
    words = len(PROMPT.split())
    assert shown["usage"] == {"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words}
    charge = TaskCharge.objects.get(task_id=task.pk)
    assert charge.settled_at is not None
    assert (charge.prompt_tokens, charge.completion_tokens) == (words, words)


def test_candidates_the_tenant_may_not_use_or_already_ran_on_are_left_out(acme, globex, acme_api, failing,
                                                                         stream_log_backend):
    echo_copies("echo-a", "echo-b", "echo-c")
    echo_copies("echo-globex", public=False, tenants=("globex",))
    make_router("chain", {"candidates": ["echo-a", "echo-globex", "echo-b", "echo-c"]})
    failing({"echo-a", "echo-b"})

    task = _run_to_end(uuid.UUID(submit(acme_api, "chain", PROMPT)["id"]))

    limit = settings.TASK_MAX_ATTEMPTS
    assert (task.state, task.model.name, task.attempt) == (TaskState.SUCCEEDED, "echo-c", 2 * limit + 1)
    assert task.fallbacks == [{"model": "echo-a", "attempts": limit}, {"model": "echo-b", "attempts": 2 * limit}]


def test_with_no_candidate_left_the_task_fails_retries_exhausted(acme, acme_api, failing, stream_log_backend):
    echo_copies("echo-a", "echo-b")
    make_router("all-flaky", {"candidates": ["echo-a", "echo-b"]})
    broken = failing({"echo-a", "echo-b"})

    task = _run_to_end(uuid.UUID(submit(acme_api, "all-flaky", PROMPT)["id"]))

    limit = settings.TASK_MAX_ATTEMPTS
    assert broken.calls == 2 * limit  # each candidate gets its own attempts
    assert (task.state, task.error_code, task.model.name) == (TaskState.FAILED, "retries_exhausted", "echo-b")
    assert task.error_message == f"attempt {limit} of {limit} failed, the last allowed: upstream overloaded"
    assert TaskCharge.objects.get(task_id=task.pk).settled_at is not None


def test_a_permanent_error_does_not_fall_back(acme, acme_api, failing, stream_log_backend):
    echo_copies("echo-a", "echo-b")
    make_router("strict", {"candidates": ["echo-a", "echo-b"]})
    broken = failing({"echo-a"}, permanent=True)

    task = _run_to_end(uuid.UUID(submit(acme_api, "strict", PROMPT)["id"]))

    assert broken.calls == 1
    assert (task.state, task.error_code, task.model.name, task.attempt) == (
        TaskState.FAILED, "generation_failed", "echo-a", 1,
    )
    assert task.fallbacks == []
    assert acme_api.get(f"{TASKS}/{task.pk}").body["routed_to"] == "echo-a"
