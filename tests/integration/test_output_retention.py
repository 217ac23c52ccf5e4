"""manage.py purge_expired_outputs: finished tasks older than their tenant's retention lose
their input, output and stream log; younger ones, unfinished ones and tenants without
a retention period keep everything."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.runtime.execution import execute_task
from apps.streaming.log import stream_log
from apps.tasks import payloads
from apps.tasks.models import Task, TaskState
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


def finished_task(api, prompt: str, days_ago: float) -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    execute_task(created.body["id"])
    task = Task.objects.get(pk=created.body["id"])
    assert task.state == TaskState.SUCCEEDED and stream_log().last_seq(task.pk) > 0
    Task.objects.filter(pk=task.pk).update(finished_at=timezone.now() - timedelta(days=days_ago))
    return task


def purge(capture) -> str:
    out = io.StringIO()
    with capture(execute=True):  # stream logs are purged once the erasure commits
        call_command("purge_expired_outputs", stdout=out)
    return out.getvalue()


def test_only_finished_tasks_past_their_tenants_retention_are_erased(
    acme, globex, acme_api, globex_api, django_capture_on_commit_callbacks
):
    Tenant.objects.filter(pk=acme.pk).update(output_retention_days=7)
    # globex keeps outputs forever (no retention period)
    expired = finished_task(acme_api, "acme expired", days_ago=8)
    recent = finished_task(acme_api, "acme recent", days_ago=6)
    queued = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "acme still queued"}).body["id"]
    Task.objects.filter(pk=queued).update(created_at=timezone.now() - timedelta(days=30))
    ancient = finished_task(globex_api, "globex ancient", days_ago=400)

    assert purge(django_capture_on_commit_callbacks) == "1\n"

    gone = acme_api.get(f"/api/v1/tasks/{expired.pk}").body
    assert gone["erased"] is True
    assert gone["input"] is None and gone["output"] is None and gone["metadata"] == {}
    assert gone["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}  # accounting stays
    assert stream_log().last_seq(expired.pk) == 0

    for task, api, text in ((recent, acme_api, "acme recent"), (ancient, globex_api, "globex ancient")):
        kept = api.get(f"/api/v1/tasks/{task.pk}").body
        assert (kept["erased"], kept["output"]) == (False, text)
        assert stream_log().last_seq(task.pk) > 0
    still = Task.objects.get(pk=queued)
    assert still.state == TaskState.QUEUED and payloads.read_input(still)["prompt"] == "acme still queued"

    # Nothing more has expired: a second run erases nothing.
    assert purge(django_capture_on_commit_callbacks) == "0\n"


def test_a_retention_of_zero_days_erases_every_finished_task(acme, acme_api, django_capture_on_commit_callbacks):
    Tenant.objects.filter(pk=acme.pk).update(output_retention_days=0)
    tasks = [finished_task(acme_api, f"task {i}", days_ago=0.001) for i in range(3)]

    assert purge(django_capture_on_commit_callbacks) == "3\n"

    assert all(Task.objects.get(pk=t.pk).erased_at is not None for t in tasks)
