"""An admin action that changes rows needs the change permission, as the edit
form does: revoking tenants' API keys or operator tokens, pausing and resuming
tenants, cancelling tasks, making a model version current, granting a model
to tenants, draining and undraining workers are not open to an operator who
may only view those rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel, ModelVersion
from apps.security.models import OperatorToken
from apps.security.services import issue_operator_token
from apps.tasks.models import Task, TaskState
from apps.tasks.services import TaskRequest, submit_task
from apps.tenants.models import ApiKey, Tenant
from apps.tenants.services import issue_api_key, pause_tenant
from apps.webhooks.models import Delivery, DeliveryStatus, TenantWebhook
from apps.workers.models import Worker, WorkerState
from apps.workers.services import drain, register_worker
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Case:
    changelist: str
    action: str
    app_model: str  # "tenants.apikey": the view_ and change_ permissions are named from it
    row: Callable[[Any], Any]  # the row to act on, made from the test's fixtures
    changed: Callable[[Any], bool]  # whether the action took effect on that row
    form: dict[str, Any] = field(default_factory=dict)  # more of the action's form (an intermediate page's)

    @property
    def permissions(self) -> tuple[str, str]:
        app, model = self.app_model.split(".")
        return f"{app}.view_{model}", f"{app}.change_{model}"


def _worker(world, drained: bool = False) -> Worker:
    worker = register_worker(name="gpu-1", host="h", pid=1, slots=1, device_info={})
    return drain(worker) if drained else worker


def _failed_delivery(world) -> Delivery:
    return Delivery.objects.create(tenant=world.acme, status=DeliveryStatus.FAILED, attempts=3, give_up_after=3,
                                   payload_ciphertext=world.acme.cipher.encrypt_json({}))


def _version(world) -> ModelVersion:
    model = LLMModel.objects.create(name="rolled", adapter="echo", is_public=True)
    old = ModelVersion.objects.create(model=model, version="v1")
    catalog.make_version_current(old)
    return ModelVersion.objects.create(model=model, version="v2")


CASES = [
    Case("/admin/tenants/apikey/", "revoke_keys", "tenants.apikey",
         lambda w: issue_api_key(w.acme, name="k").api_key,
         lambda key: ApiKey.objects.get(pk=key.pk).revoked_at is not None),
    Case("/admin/security/operatortoken/", "revoke_tokens", "security.operatortoken",
         lambda w: issue_operator_token(make_operator("token-owner", permissions=[]), name="t").token,
         lambda token: OperatorToken.objects.get(pk=token.pk).revoked_at is not None),
    Case("/admin/tenants/tenant/", "pause_tenants", "tenants.tenant",
         lambda w: w.acme,
         lambda tenant: not Tenant.objects.get(pk=tenant.pk).active),
    Case("/admin/tenants/tenant/", "resume_tenants", "tenants.tenant",
         lambda w: pause_tenant(w.acme) and w.acme,
         lambda tenant: Tenant.objects.get(pk=tenant.pk).active),
    Case("/admin/tasks/task/", "cancel_tasks", "tasks.task",
         lambda w: submit_task(w.acme, None, TaskRequest(model="echo", prompt="hi")).task,
         lambda task: Task.objects.get(pk=task.pk).state == TaskState.CANCELLED),
    Case("/admin/catalog/modelversion/", "make_current", "catalog.modelversion",
         _version,
         lambda version: LLMModel.objects.get(pk=version.model_id).current_version_id == version.pk),
    Case("/admin/catalog/llmmodel/", "grant_to_tenants", "catalog.llmmodel",
         lambda w: LLMModel.objects.create(name="private", adapter="echo"),
         lambda model: LLMModel.objects.get(pk=model.pk).allowed_tenants.filter(slug="acme").exists(),
         form={"apply": "Grant", "tenants": "acme"}),
    Case("/admin/webhooks/delivery/", "retry_deliveries", "webhooks.delivery",
         _failed_delivery,
         lambda delivery: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.PENDING),
    Case("/admin/webhooks/tenantwebhook/", "rotate_secrets", "webhooks.tenantwebhook",
         lambda w: TenantWebhook.objects.create(tenant=w.acme),
         lambda row: TenantWebhook.objects.get(pk=row.pk).secret_ciphertext is not None),
    Case("/admin/workers/worker/", "drain_workers", "workers.worker",
         _worker,
         lambda worker: Worker.objects.get(pk=worker.pk).state == WorkerState.DRAINING),
    Case("/admin/workers/worker/", "undrain_workers", "workers.worker",
         lambda w: _worker(w, drained=True),
         lambda worker: Worker.objects.get(pk=worker.pk).state == WorkerState.ACTIVE),
]


@dataclass(frozen=True)
class World:
    acme: Tenant


@pytest.fixture
def world(acme) -> World:
    return World(acme=acme)


def _admin(*permissions: str) -> Client:
    client = Client()
    client.force_login(make_operator("operator", permissions=permissions))
    return client


def _run(client: Client, case: Case, row) -> Any:
    form = {"action": case.action, "_selected_action": [str(row.pk)], **case.form}
    if case.form.get("tenants"):
        form["tenants"] = [str(Tenant.objects.get(slug=case.form["tenants"]).pk)]
    return client.post(case.changelist, form)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.action)
def test_a_viewer_is_neither_offered_the_action_nor_able_to_run_it(world, case):
    row = case.row(world)
    view, _ = case.permissions
    admin = _admin(view)
    listing = admin.get(case.changelist)
    assert listing.status_code == 200
    assert case.action not in listing.content.decode()

    _run(admin, case, row)

    assert not case.changed(row)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.action)
def test_the_change_permission_runs_the_action(world, case):
    row = case.row(world)
    admin = _admin(*case.permissions)
    assert case.action in admin.get(case.changelist).content.decode()

    response = _run(admin, case, row)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert case.changed(row)
