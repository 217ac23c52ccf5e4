"""A paused tenant: its new submissions are refused with 403 tenant_paused on
every channel (/api/v1/tasks, /api/v1/workflows, /v1), its reads, cancels and
streams still answer, its queued tasks wait without losing their place and
start once it is resumed, and a task it had running finishes."""

from __future__ import annotations

import pytest

from apps.runtime.execution import execute_task
from apps.scheduler import wakeup
from apps.tasks.models import Task, TaskState
from apps.tenants.models import Tenant
from apps.tenants.services import pause_tenant, resume_tenant
from tests.audit_support import events
from tests.integration.gateway_support import CHAT, COMPLETIONS

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
SUBMISSION = {"model": "echo", "prompt": "hello"}
WORKFLOW = {"nodes": [{"name": "only", "model": "echo", "prompt": "hi"}]}
FAILURE_WAIT = 30.0  # bounds a lost wake-up; a delivered one returns at once


def _submit(api, prompt: str = "hello") -> str:
    created = api.post(TASKS, {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    return created.body["id"]


def _assert_paused(response) -> None:
    assert response.status == 403, response.body
    assert response.body["error"]["code"] == "tenant_paused", response.body
    assert response.body["error"]["type"] == "permission_error"


def _handed_out() -> set[str]:
    handed_out = Task.objects.filter(state=TaskState.QUEUED, dispatched_at__isnull=False)
    return {str(pk) for pk in handed_out.values_list("pk", flat=True)}


def test_every_channel_refuses_a_paused_tenants_submissions(acme, acme_api, globex_api):
    assert pause_tenant(acme)

    _assert_paused(acme_api.post(TASKS, SUBMISSION))
    _assert_paused(acme_api.post("/api/v1/workflows", WORKFLOW))
    _assert_paused(acme_api.post(CHAT, {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
    _assert_paused(acme_api.post(COMPLETIONS, {"model": "echo", "prompt": "hi"}))
    _assert_paused(acme_api.post(CHAT, {"model": "echo", "messages": [{"role": "user", "content": "hi"}],
                                        "stream": True}))
    assert not Task.objects.filter(tenant=acme).exists()
    # Another tenant is not affected.
    assert globex_api.post(TASKS, SUBMISSION).status == 201


def test_a_paused_tenant_still_reads_cancels_and_erases(acme, acme_api):
    queued, doomed, erased = _submit(acme_api, "a"), _submit(acme_api, "b"), _submit(acme_api, "c")
    pause_tenant(acme)

    for path in (TASKS, f"{TASKS}/{queued}", "/api/v1/models", "/api/v1/usage", "/api/v1/usage/report",
                 "/v1/models"):
        assert acme_api.get(path).status == 200, path
    assert acme_api.post(f"{TASKS}/{queued}/stream-token").status == 200  # it may follow its tasks
    cancelled = acme_api.post(f"{TASKS}/{doomed}/cancel")
    assert (cancelled.status, cancelled.body["status"]) == (200, "cancelled"), cancelled.body
    assert acme_api.delete(f"{TASKS}/{erased}").status == 204
    assert Task.objects.get(pk=queued).state == TaskState.QUEUED


def test_queued_tasks_wait_while_paused_and_start_once_resumed(acme, acme_api, globex_api, dispatcher):
    waiting = _submit(acme_api, "acme's")
    pause_tenant(acme)
    other = _submit(globex_api, "globex's")

    assert dispatcher.run_once() == 1  # globex's only: acme's task keeps its place
    assert _handed_out() == {other}
    assert dispatcher.run_once() == 0
    assert Task.objects.get(pk=waiting).state == TaskState.QUEUED

    resume_tenant(acme)

    assert dispatcher.run_once() == 1
    assert _handed_out() == {other, waiting}
    execute_task(waiting)
    assert Task.objects.get(pk=waiting).state == TaskState.SUCCEEDED


def test_a_task_running_when_paused_finishes(acme, acme_api, dispatcher):
    task_id = _submit(acme_api, "under way")
    assert dispatcher.run_once() == 1  # on a worker's queue: it has started as far as the platform goes
    pause_tenant(acme)

    execute_task(task_id)

    task = Task.objects.get(pk=task_id)
    assert (task.state, task.prompt_tokens, task.completion_tokens) == (TaskState.SUCCEEDED, 2, 2)
    assert acme_api.get(f"{TASKS}/{task_id}").body["output"] == "under way"


def test_resuming_wakes_the_dispatcher(acme, django_capture_on_commit_callbacks):
    pause_tenant(acme)
    subscription = wakeup.dispatcher_wakeups()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert resume_tenant(acme)
        woken = subscription.wait(FAILURE_WAIT)
    finally:
        subscription.close()
    assert woken is not None
    assert Tenant.objects.get(pk=acme.pk).active


def test_pausing_and_resuming_are_audited_once_each(acme):
    assert pause_tenant(acme) and not pause_tenant(acme)  # the second changes nothing
    assert resume_tenant(acme) and not resume_tenant(acme)

    assert [(event.action, event.changes) for event in events("tenant_paused", "tenant_resumed")] == [
        ("tenant_paused", {"active": [True, False]}),
        ("tenant_resumed", {"active": [False, True]}),
    ]
