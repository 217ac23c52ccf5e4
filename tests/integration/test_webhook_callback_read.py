"""The ending transaction's read of a task's callbacks (apps.webhooks.services.callback_of),
a hand-written statement, answers what the ORM's joined read answers: the task's own
callback, its tenant's, both, neither, and no task at all. On SQLite and PostgreSQL alike
(the suite runs on both)."""

from __future__ import annotations

import uuid

import pytest

from apps.tasks.models import Task
from apps.tasks.services import TaskRequest
from apps.tenants.models import Tenant
from apps.webhooks import services
from apps.webhooks.models import TenantWebhook

pytestmark = pytest.mark.django_db

TASK_URL = "https://hooks.example.com/task?token=t0k3n"
TENANT_URL = "https://hooks.example.com/tenant"


def _orm_answer(task_id: uuid.UUID) -> services.Callback | None:
    """The same question through the ORM: the task's callback row and its tenant's, joined."""
    found = (
        Task.objects.filter(pk=task_id)
        .values("webhook__url_ciphertext", "webhook__include_output", "tenant__webhook__url")
        .first()
    )
    if found is None:
        return None
    ciphertext = found["webhook__url_ciphertext"]
    return services.Callback(
        url_ciphertext=None if ciphertext is None else bytes(ciphertext),
        include_output=bool(found["webhook__include_output"]),
        tenant_url=found["tenant__webhook__url"] or "",
    )


def _task(api) -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "one two three"})
    assert created.status == 201, created.body
    return Task.objects.select_related("tenant").get(pk=created.body["id"])


def _own_callback(task: Task, url: str | None, include_output: bool = False) -> None:
    services.keep_task_webhook(
        task, TaskRequest(model="echo", prompt="x", webhook_url=url, webhook_include_output=include_output)
    )


def _tenant_url(tenant: Tenant, url: str) -> None:
    TenantWebhook.objects.update_or_create(tenant=tenant, defaults={"url": url})


def _same_as_the_orm(task: Task) -> services.Callback:
    found = services.callback_of(task.pk)
    assert found == _orm_answer(task.pk)
    assert found is not None
    return found


def test_no_callback_at_all(acme_api):
    found = _same_as_the_orm(_task(acme_api))
    assert found == services.Callback(None, False, "")
    assert not found.owed


def test_a_tenant_row_without_a_url_owes_nothing(acme_api, acme):
    task = _task(acme_api)
    _tenant_url(acme, "")
    assert not _same_as_the_orm(task).owed


def test_the_tenants_callback(acme_api, acme):
    task = _task(acme_api)
    _tenant_url(acme, TENANT_URL)
    found = _same_as_the_orm(task)
    assert found.owed and found.url_ciphertext is None and found.tenant_url == TENANT_URL


def test_the_tasks_own_callback_beside_its_tenants(acme_api, acme):
    task = _task(acme_api)
    _own_callback(task, TASK_URL, include_output=True)
    _tenant_url(acme, TENANT_URL)
    found = _same_as_the_orm(task)
    assert found.include_output and found.tenant_url == TENANT_URL
    assert found.url_ciphertext is not None
    assert acme.cipher.decrypt_json(found.url_ciphertext) == {"url": TASK_URL}


def test_output_asked_for_without_a_url_of_its_own(acme_api):
    task = _task(acme_api)
    _own_callback(task, None, include_output=True)
    found = _same_as_the_orm(task)
    assert found == services.Callback(None, True, "")
    assert not found.owed


def test_another_tenants_callback_is_not_read(acme_api, globex):
    task = _task(acme_api)
    _tenant_url(globex, TENANT_URL)
    assert not _same_as_the_orm(task).owed


def test_no_such_task():
    assert services.callback_of(uuid.uuid4()) is None
    assert _orm_answer(uuid.uuid4()) is None
