"""The worker records when a task's first text came (Task.first_token_at): the
operators' time to first token. Written with the task's end, so a streaming
slot needs no database connection; none for a task that produced no text."""

from __future__ import annotations

import uuid

import pytest

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db


def _run(api, model: str) -> Task:
    created = api.post("/api/v1/tasks", {"model": model, "prompt": "one two three", "max_tokens": 8})
    assert created.status == 201, created.body
    execute_task(uuid.UUID(created.body["id"]))
    return Task.objects.get(pk=created.body["id"])


def test_a_generated_task_records_its_first_tokens_time(acme_api):
    task = _run(acme_api, "echo")

    assert task.state == TaskState.SUCCEEDED
    assert task.first_token_at is not None
    assert task.queued_at <= task.started_at <= task.first_token_at <= task.finished_at


def test_a_task_that_produced_no_text_has_none(acme_api):
    LLMModel.objects.create(name="unloadable", adapter="echo", adapter_config={"words_per_second": -1},
                            is_public=True)

    task = _run(acme_api, "unloadable")

    assert task.state == TaskState.FAILED
    assert task.first_token_at is None
