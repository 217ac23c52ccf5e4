"""Requests per minute: over the limit → 429 with Retry-After, and every
submission carries X-RateLimit-Limit/-Remaining/-Reset. On both back ends
(database, Redis).

A limit of 3 per minute refills one request every 20 s; each test sends its
requests back to back, well inside that.
"""

from __future__ import annotations

import pytest

from apps.tasks.models import Task
from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db

TASK = {"model": "echo", "prompt": "hello", "max_tokens": 5}


@pytest.fixture(autouse=True)
def three_per_minute(acme, rate_limit_backend):
    change_tenant_plan(acme, {"rpm": 3, "tpm": None})


def test_the_fourth_request_in_a_minute_is_refused_with_retry_after(acme, acme_api):
    remaining = []
    for _ in range(3):
        created = acme_api.post("/api/v1/tasks", TASK)
        assert created.status == 201, created.body
        assert created.headers["X-RateLimit-Limit"] == "3"
        assert 0 < int(created.headers["X-RateLimit-Reset"]) <= 60
        remaining.append(created.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]

    refused = acme_api.post("/api/v1/tasks", TASK)

    assert refused.status == 429, refused.body
    assert refused.body["error"]["code"] == "rate_limited"
    assert refused.body["error"]["type"] == "rate_limit_error"
    # The next request fits once one request's worth (20 s) has refilled.
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert Task.objects.for_tenant(acme).count() == 3


def test_a_refused_request_takes_nothing_from_the_budget(acme, acme_api):
    change_tenant_plan(acme, {"budget_tokens": 1000})
    for _ in range(3):
        assert acme_api.post("/api/v1/tasks", TASK).status == 201

    assert acme_api.post("/api/v1/tasks", TASK).status == 429

    usage = acme_api.get("/api/v1/usage").body
    assert usage["reserved_tokens"] == 3 * 6
    assert usage["rate_limits"]["requests_per_minute"]["remaining"] == 0


def test_each_tenant_has_its_own_limit(acme_api, globex_api):
    for _ in range(3):
        assert acme_api.post("/api/v1/tasks", TASK).status == 201
    assert acme_api.post("/api/v1/tasks", TASK).status == 429

    other = globex_api.post("/api/v1/tasks", TASK)
    assert other.status == 201
    # globex is on the default plan.
    assert other.headers["X-RateLimit-Limit"] == "600"
    assert other.headers["X-RateLimit-Remaining"] == "599"


def test_a_zero_limit_refuses_everything(acme, acme_api):
    change_tenant_plan(acme, {"rpm": 0})

    refused = acme_api.post("/api/v1/tasks", TASK)

    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
