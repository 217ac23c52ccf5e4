"""The queue cap: a tenant with max_queued tasks queued or waiting gets 429
"queue_full" with Retry-After; running tasks do not count."""

from __future__ import annotations

import pytest

from apps.tasks import services
from apps.tasks.models import Task
from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db

TASK = {"model": "echo", "prompt": "hello there", "max_tokens": 5}


@pytest.fixture(autouse=True)
def two_in_the_queue(acme):
    change_tenant_plan(acme, {"max_queued": 2, "budget_tokens": 1000})


def _submit(api) -> str:
    created = api.post("/api/v1/tasks", TASK)
    assert created.status == 201, created.body
    return created.body["id"]


def test_a_full_queue_refuses_with_429_and_reserves_nothing(acme, acme_api):
    _submit(acme_api)
    _submit(acme_api)

    refused = acme_api.post("/api/v1/tasks", TASK)

    assert refused.status == 429, refused.body
    assert refused.body["error"]["code"] == "queue_full"
    assert int(refused.headers["Retry-After"]) > 0
    assert Task.objects.for_tenant(acme).count() == 2
    assert acme_api.get("/api/v1/usage").body["reserved_tokens"] == 2 * 7


def test_a_place_frees_when_a_queued_task_ends_or_starts(acme_api):
    first = _submit(acme_api)
    second = _submit(acme_api)
    assert acme_api.post("/api/v1/tasks", TASK).status == 429

    acme_api.post(f"/api/v1/tasks/{first}/cancel")
    _submit(acme_api)
    assert acme_api.post("/api/v1/tasks", TASK).status == 429

    # A running task has left the queue.
    assert services.claim_task(second, "worker-a") is not None
    _submit(acme_api)
    assert acme_api.post("/api/v1/tasks", TASK).status == 429


def test_the_cap_is_per_tenant(acme_api, globex_api):
    _submit(acme_api)
    _submit(acme_api)
    assert acme_api.post("/api/v1/tasks", TASK).status == 429

    assert globex_api.post("/api/v1/tasks", TASK).status == 201
