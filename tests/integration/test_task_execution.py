"""A worker running one task: claim, stream from the adapter, record exactly one result."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.catalog.adapters import AdapterError, GenerationRequest, ModelAdapter, TextChunk, Usage
from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.runtime.leases import LeaseKeeper
from apps.tasks import payloads, services
from apps.tasks.models import Task, TaskState

SLOW_PROMPT = " ".join(f"word{i}" for i in range(200))  # 10 s at 20 words/s


def _submit(api, prompt: str = "the quick brown fox", model: str = "echo", **extra) -> Task:
    created = api.post("/api/v1/tasks", {"model": model, "prompt": prompt, **extra})
    assert created.status == 201, created.body
    return Task.objects.select_related("tenant").get(pk=created.body["id"])


@pytest.fixture
def huey(model_queues):
    """The echo model's queue, empty at the start: what a test dispatches is all it holds."""
    return model_queues("echo").huey


class BrokenRemoteModel(ModelAdapter):
    """Stands in for a remote model that fails: some text, then an error."""

    name = "broken-remote"

    def __init__(self, error: Exception, partial: tuple[str, ...] = ()) -> None:
        super().__init__({}, {})
        self.error = error
        self.partial = partial
        self.calls = 0

    def stream(self, request: GenerationRequest) -> Iterator[TextChunk | Usage]:
        self.calls += 1
        for text in self.partial:
            yield TextChunk(text)
        raise self.error


@pytest.fixture
def remote_model(monkeypatch):
    """Serve every model from the given broken adapter (the outside world's failure)."""

    def install(adapter: ModelAdapter) -> ModelAdapter:
        monkeypatch.setattr("apps.runtime.execution.adapter_for", lambda model, version=None: adapter)
        return adapter

    return install


# --- Straight runs -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_queued_echo_task_succeeds_with_its_output_and_usage(acme_api):
    task = _submit(acme_api, "the quick brown fox")

    execute_task(task.pk)

    task.refresh_from_db()
    assert task.state == TaskState.SUCCEEDED
    assert payloads.read_output(task) == "the quick brown fox"
    assert task.usage == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert task.attempt == 1
    assert task.error_code == ""
    assert task.lease_expires_at is None
    assert task.started_at is not None and task.finished_at >= task.started_at
    # And the tenant reads the same through the API.
    shown = acme_api.get(f"/api/v1/tasks/{task.pk}").body
    assert shown["output"] == "the quick brown fox"
    assert shown["usage"] == task.usage


@pytest.mark.django_db
def test_max_tokens_and_stop_reach_the_adapter(acme_api):
    task = _submit(acme_api, "one two three STOP four five", max_tokens=4, stop=["STOP"])
    execute_task(task.pk)
    task.refresh_from_db()
    assert payloads.read_output(task) == "one two three "
    assert task.usage["completion_tokens"] == 3

    capped = _submit(acme_api, "one two three four five", max_tokens=2)
    execute_task(capped.pk)
    capped.refresh_from_db()
    assert payloads.read_output(capped) == "one two "


@pytest.mark.django_db
def test_a_cancelled_task_is_not_run(acme_api):
    task = _submit(acme_api)
    services.cancel_task(task)
    snapshot = Task.objects.filter(pk=task.pk).values().get()

    execute_task(task.pk)

    assert Task.objects.filter(pk=task.pk).values().get() == snapshot
    task.refresh_from_db()
    assert (task.state, task.attempt, task.started_at, task.output_ciphertext) == (TaskState.CANCELLED, 0, None, None)


@pytest.mark.django_db
def test_a_finished_task_is_not_run_again(acme_api):
    task = _submit(acme_api)
    execute_task(task.pk)
    snapshot = Task.objects.filter(pk=task.pk).values().get()

    execute_task(task.pk)  # a duplicate queue message

    assert Task.objects.filter(pk=task.pk).values().get() == snapshot


@pytest.mark.django_db
def test_an_unknown_task_id_is_ignored(acme_api):
    # e.g. a message outliving its task: no error, no row made for it, and the
    # queued task beside it is neither claimed nor touched.
    bystander = _submit(acme_api)
    before = list(Task.objects.order_by("pk").values())

    execute_task(uuid.uuid4())

    assert list(Task.objects.order_by("pk").values()) == before
    assert Task.objects.get(pk=bystander.pk).state == TaskState.QUEUED


@pytest.mark.django_db
def test_an_unusable_model_config_fails_the_task_as_model_unavailable(acme_api):
    LLMModel.objects.create(name="echo-broken-config", adapter="echo", adapter_config={"words_per_second": -1},
                            is_public=True)
    task = _submit(acme_api, model="echo-broken-config")

    execute_task(task.pk)

    task.refresh_from_db()
    assert task.state == TaskState.FAILED
    assert task.error_code == "model_unavailable"
    assert "words_per_second" in task.error_message


# --- Failing adapters ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_transient_adapter_error_requeues_the_task_for_another_attempt(acme_api, remote_model, huey, dispatcher):
    adapter = remote_model(BrokenRemoteModel(AdapterError("upstream returned 503"), partial=("the ",)))
    task = _submit(acme_api)
    assert huey.pending_count() == 0

    execute_task(task.pk)

    task.refresh_from_db()
    assert task.state == TaskState.QUEUED
    assert task.attempt == 1
    assert task.worker_name == "" and task.lease_expires_at is None
    assert task.error_code == "retrying" and "503" in task.error_message
    assert task.output_ciphertext is None
    assert adapter.calls == 1
    # ...ready again: the dispatcher puts it back onto the queue, as its id only.
    assert task.dispatched_at is None
    assert dispatcher.run_once() == 1
    assert huey.pending_count() == 1
    [message] = huey.pending()
    assert message.args == (str(task.pk),)

    # The next attempt runs from the queue as usual.
    execute_task(task.pk)
    task.refresh_from_db()
    assert (task.state, task.attempt) == (TaskState.QUEUED, 2)


@pytest.mark.django_db
def test_a_crashing_adapter_is_treated_as_a_transient_error(acme_api, remote_model, huey, dispatcher):
    remote_model(BrokenRemoteModel(RuntimeError("segfault-ish")))
    task = _submit(acme_api)

    execute_task(task.pk)

    task.refresh_from_db()
    assert (task.state, task.attempt, task.error_code) == (TaskState.QUEUED, 1, "retrying")
    assert dispatcher.run_once() == 1
    assert huey.pending_count() == 1


@pytest.mark.django_db
def test_a_permanent_adapter_error_fails_the_task(acme_api, remote_model, huey):
    adapter = remote_model(BrokenRemoteModel(AdapterError("prompt rejected by the model", permanent=True)))
    task = _submit(acme_api)

    execute_task(task.pk)

    task.refresh_from_db()
    assert task.state == TaskState.FAILED
    assert task.error_code == "generation_failed"
    assert task.error_message == "prompt rejected by the model"
    assert task.attempt == 1
    assert task.finished_at is not None and task.lease_expires_at is None
    assert adapter.calls == 1
    assert huey.pending_count() == 0  # not retried
    execute_task(task.pk)
    assert adapter.calls == 1


@pytest.mark.django_db
def test_the_task_fails_after_max_attempts_transient_errors(acme_api, remote_model, huey):
    adapter = remote_model(BrokenRemoteModel(AdapterError("upstream timed out")))
    task = _submit(acme_api)
    max_attempts = settings.TASK_MAX_ATTEMPTS
    assert max_attempts >= 2

    for attempt in range(1, max_attempts):
        execute_task(task.pk)
        task.refresh_from_db()
        assert (task.state, task.attempt) == (TaskState.QUEUED, attempt)

    execute_task(task.pk)

    task.refresh_from_db()
    assert task.state == TaskState.FAILED
    assert task.attempt == max_attempts
    assert task.error_code == "retries_exhausted"
    assert task.error_message == (
        f"attempt {max_attempts} of {max_attempts} failed, the last allowed: upstream timed out"
    )
    assert adapter.calls == max_attempts
    execute_task(task.pk)  # no attempt after the last
    assert adapter.calls == max_attempts


@pytest.mark.django_db
def test_the_attempt_limit_comes_from_settings(acme_api, remote_model, huey, settings):
    settings.TASK_MAX_ATTEMPTS = 1
    remote_model(BrokenRemoteModel(AdapterError("upstream timed out")))
    task = _submit(acme_api)

    execute_task(task.pk)

    task.refresh_from_db()
    assert (task.state, task.attempt, task.error_code) == (TaskState.FAILED, 1, "retries_exhausted")
    assert huey.pending_count() == 0


# --- While it runs (a worker thread and this test on separate connections) ------------------


@pytest.fixture
def slow_echo(db) -> LLMModel:
    return LLMModel.objects.create(
        name="echo-slow", adapter="echo", adapter_config={"words_per_second": 20}, is_public=True
    )


def _start_worker(task_id) -> tuple[threading.Thread, list[BaseException]]:
    """Run the task in a thread as a worker would: with a lease keeper renewing beside it."""
    errors: list[BaseException] = []
    keeper = LeaseKeeper(renew_seconds=0.1)
    keeper.start()

    def run() -> None:
        try:
            execute_task(task_id, keeper)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            keeper.stop()
            connection.close()

    thread = threading.Thread(target=run, name="test-worker")
    thread.start()
    return thread, errors


def _wait_until_running(task: Task) -> None:
    deadline = time.monotonic() + 10
    while not Task.objects.filter(pk=task.pk, state=TaskState.RUNNING).exists():
        assert time.monotonic() < deadline, "the worker never claimed the task"
        time.sleep(0.01)


def _join(thread: threading.Thread, errors: list[BaseException]) -> None:
    thread.join(15)
    assert not thread.is_alive(), "the worker did not stop"
    assert not errors, errors


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_cancel_while_running_stops_the_worker_and_keeps_the_partial_output(acme_api, slow_echo, huey):
    task = _submit(acme_api, SLOW_PROMPT, model="echo-slow", max_tokens=1000)
    thread, errors = _start_worker(task.pk)
    _wait_until_running(task)

    services.cancel_task(task)
    _join(thread, errors)

    task.refresh_from_db()
    assert task.state == TaskState.CANCELLED
    assert task.error_code == "cancelled"
    output = payloads.read_output(task)
    assert output and SLOW_PROMPT.startswith(output) and len(output) < len(SLOW_PROMPT)
    assert task.usage["prompt_tokens"] == 200
    assert task.usage["completion_tokens"] == len(output.split())
    assert task.lease_expires_at is None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_worker_that_lost_its_lease_does_not_record_over_the_new_attempt(acme_api, slow_echo, huey):
    task = _submit(acme_api, SLOW_PROMPT, model="echo-slow", max_tokens=1000)
    thread, errors = _start_worker(task.pk)
    _wait_until_running(task)

    # The first worker looks dead: its lease runs out, the task is requeued
    # and a second worker takes attempt 2 while the first is still streaming.
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    requeued, _ = services.reap_expired_leases()
    assert [t.pk for t in requeued] == [task.pk]
    second = services.claim_task(task.pk, "worker-b")
    assert second is not None and second.attempt == 2
    _join(thread, errors)

    task.refresh_from_db()
    assert (task.state, task.attempt, task.worker_name) == (TaskState.RUNNING, 2, "worker-b")
    assert task.output_ciphertext is None and task.usage is None

    usage = {"prompt_tokens": 200, "completion_tokens": 200, "total_tokens": 400}
    assert services.finish_task(second, state=TaskState.SUCCEEDED, output=SLOW_PROMPT, usage=usage)
    task.refresh_from_db()
    assert payloads.read_output(task) == SLOW_PROMPT



@pytest.mark.django_db
def test_a_cancelled_task_whose_adapter_fails_is_not_retried(acme_api):
    from apps.runtime.execution import _record_failure

    task_id = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "a b c"}).body["id"]
    task = services.claim_task(task_id, "w")
    Task.objects.filter(pk=task_id).update(cancel_requested=True)
    _record_failure(task, AdapterError("remote hiccup"), "a ")
    task.refresh_from_db()
    assert task.state == TaskState.CANCELLED
    assert task.error_code == "cancelled"


@pytest.mark.django_db
def test_the_reaper_ends_a_cancel_requested_task_instead_of_requeueing(acme_api):
    task_id = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "a b c"}).body["id"]
    services.claim_task(task_id, "w")
    expired = timezone.now() - timedelta(seconds=1)
    Task.objects.filter(pk=task_id).update(cancel_requested=True, lease_expires_at=expired)
    requeued, _ = services.reap_expired_leases()
    assert requeued == []
    assert Task.objects.get(pk=task_id).state == TaskState.CANCELLED
