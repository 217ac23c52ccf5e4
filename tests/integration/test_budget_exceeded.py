"""Over the token budget: 402 with the reason, and nothing reserved or created."""

from __future__ import annotations

import pytest

from apps.runtime.execution import execute_task
from apps.tasks.models import Task
from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db

TASK = {"model": "echo", "prompt": "one two three", "max_tokens": 10}  # worst case 13 tokens


def _usage(api) -> dict:
    usage = api.get("/api/v1/usage")
    assert usage.status == 200, usage.body
    return usage.body


def test_a_task_that_does_not_fit_is_refused_with_402_and_changes_nothing(acme, acme_api):
    change_tenant_plan(acme, {"budget_tokens": 30})
    assert acme_api.post("/api/v1/tasks", TASK).status == 201
    assert acme_api.post("/api/v1/tasks", TASK).status == 201  # 26 of 30 reserved
    before = _usage(acme_api)
    assert before["remaining_tokens"] == 4

    refused = acme_api.post("/api/v1/tasks", TASK)

    assert refused.status == 402, refused.body
    error = refused.body["error"]
    assert (error["type"], error["code"]) == ("insufficient_budget", "budget_exceeded")
    assert "13" in error["message"] and "4 of" in error["message"]  # the cost, and what is left
    assert refused.headers["X-RateLimit-Limit"] == "600"  # rate-limited route: the headers come with it
    after = _usage(acme_api)
    assert (after["spent_tokens"], after["reserved_tokens"], after["remaining_tokens"]) == (0, 26, 4)
    assert after["by_key"] == before["by_key"]
    assert after["tasks"] == before["tasks"]
    assert Task.objects.for_tenant(acme).count() == 2


def test_a_task_that_uses_the_budget_exactly_is_admitted(acme, acme_api):
    change_tenant_plan(acme, {"budget_tokens": 26})

    assert acme_api.post("/api/v1/tasks", TASK).status == 201
    assert acme_api.post("/api/v1/tasks", TASK).status == 201
    assert _usage(acme_api)["remaining_tokens"] == 0
    assert acme_api.post("/api/v1/tasks", {**TASK, "max_tokens": 1}).status == 402


def test_settlement_returns_the_unused_reservation_to_the_budget(acme, acme_api):
    change_tenant_plan(acme, {"budget_tokens": 20})
    first = acme_api.post("/api/v1/tasks", TASK)
    assert first.status == 201
    assert acme_api.post("/api/v1/tasks", TASK).status == 402  # 13 + 13 > 20

    execute_task(first.body["id"])  # uses 3 + 3 = 6 of its 13

    assert _usage(acme_api)["remaining_tokens"] == 14
    assert acme_api.post("/api/v1/tasks", TASK).status == 201


def test_one_tenants_budget_is_not_anothers(acme, acme_api, globex_api):
    change_tenant_plan(acme, {"budget_tokens": 0})

    assert acme_api.post("/api/v1/tasks", TASK).status == 402
    assert globex_api.post("/api/v1/tasks", TASK).status == 201
