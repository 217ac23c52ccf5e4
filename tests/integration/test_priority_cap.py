"""A plan caps the priority class a tenant may use: above it → 403."""

from __future__ import annotations

import pytest

from apps.tasks.models import Task
from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db


def _task(priority: str) -> dict:
    return {"model": "echo", "prompt": "hello", "max_tokens": 5, "priority": priority}


def test_a_class_above_the_cap_is_refused_with_403(acme, acme_api):
    change_tenant_plan(acme, {"max_priority": "normal", "budget_tokens": 100})

    refused = acme_api.post("/api/v1/tasks", _task("interactive"))

    assert refused.status == 403, refused.body
    error = refused.body["error"]
    assert (error["type"], error["code"], error["param"]) == ("permission_error", "priority_not_allowed", "priority")
    assert Task.objects.for_tenant(acme).count() == 0
    assert acme_api.get("/api/v1/usage").body["reserved_tokens"] == 0


def test_the_cap_and_the_classes_below_it_are_allowed(acme, acme_api):
    change_tenant_plan(acme, {"max_priority": "normal"})

    assert acme_api.post("/api/v1/tasks", _task("normal")).status == 201
    assert acme_api.post("/api/v1/tasks", _task("batch")).status == 201


def test_a_batch_only_plan(acme, acme_api, globex_api):
    change_tenant_plan(acme, {"max_priority": "batch"})

    assert acme_api.post("/api/v1/tasks", _task("normal")).status == 403
    assert acme_api.post("/api/v1/tasks", _task("batch")).status == 201
    # The default plan allows every class.
    assert globex_api.post("/api/v1/tasks", _task("interactive")).status == 201
