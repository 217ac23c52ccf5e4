"""Tokens per minute: each task takes its worst-case cost (prompt estimate +
max_tokens) from the bucket; over it → 429. On both back ends.

A limit of 20 per minute refills one token every 3 s; each test sends its
requests back to back, well inside that.
"""

from __future__ import annotations

import pytest

from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db


def _task(max_tokens: int) -> dict:
    return {"model": "echo", "prompt": "one", "max_tokens": max_tokens}  # costs 1 + max_tokens


@pytest.fixture(autouse=True)
def twenty_tokens_per_minute(acme, rate_limit_backend):
    change_tenant_plan(acme, {"rpm": None, "tpm": 20})


def test_tasks_are_admitted_until_their_tokens_would_pass_the_limit(acme, acme_api):
    first = acme_api.post("/api/v1/tasks", _task(7))  # 8
    second = acme_api.post("/api/v1/tasks", _task(7))  # 16
    assert (first.status, second.status) == (201, 201)
    assert first.headers["X-RateLimit-Limit-Tokens"] == "20"
    remaining = [first.headers["X-RateLimit-Remaining-Tokens"], second.headers["X-RateLimit-Remaining-Tokens"]]
    assert remaining == ["12", "4"]
    assert "X-RateLimit-Limit" not in first.headers  # no requests-per-minute limit on this plan

    refused = acme_api.post("/api/v1/tasks", _task(7))  # 24 > 20

    assert refused.status == 429, refused.body
    assert refused.body["error"]["code"] == "rate_limited"
    # 4 tokens are left and 8 are needed: 4 more tokens of refill, 3 s each.
    assert 1 <= int(refused.headers["Retry-After"]) <= 12
    assert refused.headers["X-RateLimit-Remaining-Tokens"] == "4"

    # A smaller task still fits in what is left.
    last = acme_api.post("/api/v1/tasks", _task(3))  # 20
    assert last.status == 201
    assert last.headers["X-RateLimit-Remaining-Tokens"] == "0"


def test_a_task_larger_than_the_whole_limit_is_refused_naming_max_tokens(acme_api):
    refused = acme_api.post("/api/v1/tasks", _task(20))  # 21 > 20: never fits

    assert refused.status == 429
    assert refused.body["error"]["param"] == "max_tokens"
    assert "Retry-After" in refused.headers
    # It took nothing: a task of exactly the limit is still admitted.
    admitted = acme_api.post("/api/v1/tasks", _task(19))
    assert admitted.status == 201
    assert admitted.headers["X-RateLimit-Remaining-Tokens"] == "0"
