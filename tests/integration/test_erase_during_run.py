"""Erasing a task while a worker runs it: the worker's result never brings the data back."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from django.db import connection

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.tasks import payloads, services
from apps.tasks.models import Task, TaskState

SLOW_PROMPT = " ".join(f"secret{i}" for i in range(200))  # 10 s at 20 words/s


def _submit(api, prompt: str, model: str = "echo", **extra) -> Task:
    created = api.post("/api/v1/tasks", {"model": model, "prompt": prompt, "client_ref": "ref-1", **extra})
    assert created.status == 201, created.body
    return Task.objects.select_related("tenant").get(pk=created.body["id"])


@pytest.mark.django_db
def test_finishing_an_erased_running_task_stores_no_output(acme_api):
    task = _submit(acme_api, "erase this text")
    claimed = services.claim_task(task.pk, "worker-a")

    services.erase_task(task)

    task.refresh_from_db()
    assert task.state == TaskState.RUNNING and task.cancel_requested
    assert task.erased_at is not None
    assert task.input_ciphertext is None and task.meta_ciphertext is None and task.client_ref_digest == ""

    usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert services.finish_task(claimed, state=TaskState.SUCCEEDED, output="erase this text", usage=usage) is True

    task.refresh_from_db()
    assert task.output_ciphertext is None
    assert payloads.read_output(task) is None
    assert task.input_ciphertext is None and task.meta_ciphertext is None
    # The accounting survives the erasure.
    assert task.state == TaskState.SUCCEEDED and task.usage == usage
    shown = acme_api.get(f"/api/v1/tasks/{task.pk}")
    assert shown.status == 200
    assert shown.body.get("output") is None


@pytest.mark.django_db
def test_erasing_a_finished_task_removes_its_output(acme_api):
    task = _submit(acme_api, "erase after the fact")
    execute_task(task.pk)
    task.refresh_from_db()
    assert payloads.read_output(task) == "erase after the fact"

    services.erase_task(task)

    task.refresh_from_db()
    assert task.output_ciphertext is None and task.input_ciphertext is None
    assert task.state == TaskState.SUCCEEDED


@pytest.mark.django_db
def test_an_erased_queued_task_is_never_run(acme_api):
    task = _submit(acme_api, "never run me")
    services.erase_task(task)

    execute_task(task.pk)

    task.refresh_from_db()
    assert task.state == TaskState.CANCELLED
    assert task.attempt == 0 and task.output_ciphertext is None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_erasing_while_a_worker_streams_leaves_no_output(acme_api):
    settings.HUEY.flush()
    LLMModel.objects.create(name="echo-slow", adapter="echo", adapter_config={"words_per_second": 20},
                            is_public=True)
    task = _submit(acme_api, SLOW_PROMPT, model="echo-slow", max_tokens=1000)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            execute_task(task.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 10
    while not Task.objects.filter(pk=task.pk, state=TaskState.RUNNING).exists():
        assert time.monotonic() < deadline, "the worker never claimed the task"
        time.sleep(0.01)

    services.erase_task(task)
    thread.join(15)
    assert not thread.is_alive() and not errors, errors
    settings.HUEY.flush()

    task.refresh_from_db()
    assert task.state == TaskState.CANCELLED
    assert task.output_ciphertext is None and task.input_ciphertext is None
    assert task.erased_at is not None
    assert task.finished_at is not None and task.lease_expires_at is None
