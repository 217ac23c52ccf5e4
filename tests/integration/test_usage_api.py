"""GET /api/v1/usage: the calling tenant's budget, rate limits and queue, in
total and per key; never another tenant's."""

from __future__ import annotations

import pytest

from apps.runtime.execution import execute_task
from apps.tenants.services import change_tenant_plan, issue_api_key, revoke_api_key
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


def _submit(api, prompt: str, max_tokens: int) -> str:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt, "max_tokens": max_tokens})
    assert created.status == 201, created.body
    return created.body["id"]


def test_usage_in_total_and_per_key(acme, acme_api):
    change_tenant_plan(acme, {"budget_tokens": 500, "max_queued": 10})
    second = issue_api_key(acme, name="batch jobs")
    second_api = ApiClient(second.secret)
    done = _submit(acme_api, "one two three", 10)  # 13 reserved, then 3 + 3 spent
    _submit(acme_api, "four five", 4)  # 6 reserved
    _submit(second_api, "six seven eight nine", 6)  # 10 reserved
    execute_task(done)

    usage = acme_api.get("/api/v1/usage")

    assert usage.status == 200, usage.body
    body = usage.body
    assert (body["budget_tokens"], body["spent_tokens"], body["reserved_tokens"], body["remaining_tokens"]) == (
        500,
        6,
        16,
        478,
    )
    assert body["period"]["type"] == "month"
    assert body["plan"]["max_queued"] == 10
    assert body["tasks"] == {"queued": 2, "max_queued": 10, "running": 0, "max_running": 64}
    assert body["rate_limits"]["requests_per_minute"]["limit"] == 600
    by_key = {row["key_prefix"]: row for row in body["by_key"]}
    first_prefix = acme.api_keys.get(name="acme test key").prefix
    assert set(by_key) == {first_prefix, second.api_key.prefix}
    assert by_key[first_prefix] == {
        "key_prefix": first_prefix,
        "name": "acme test key",
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
        "reserved_tokens": 6,
        "tasks": 2,
    }
    assert by_key[second.api_key.prefix]["tasks"] == 1
    assert by_key[second.api_key.prefix]["reserved_tokens"] == 10
    assert by_key[second.api_key.prefix]["total_tokens"] == 0
    # Any of the tenant's keys reads the same report (the rate-limit buckets refill
    # between the two reads, so they are compared apart from it).
    again = second_api.get("/api/v1/usage").body
    def without_rate_limits(usage: dict) -> dict:
        return {k: v for k, v in usage.items() if k != "rate_limits"}

    assert without_rate_limits(again) == without_rate_limits(body)
    assert again["rate_limits"]["requests_per_minute"]["limit"] == 600


def test_a_revoked_key_keeps_its_usage_in_the_report(acme, acme_api):
    old = issue_api_key(acme, name="old")
    _submit(ApiClient(old.secret), "one two", 3)
    revoke_api_key(old.api_key)
    unused = issue_api_key(acme, name="unused and revoked")
    revoke_api_key(unused.api_key)

    prefixes = {row["key_prefix"]: row["tasks"] for row in acme_api.get("/api/v1/usage").body["by_key"]}

    assert prefixes[old.api_key.prefix] == 1
    assert unused.api_key.prefix not in prefixes


def test_a_tenant_sees_only_its_own_usage(acme, acme_api, globex, globex_api):
    _submit(acme_api, "one two three", 10)
    _submit(acme_api, "one two three", 10)

    theirs = globex_api.get("/api/v1/usage").body

    assert (theirs["spent_tokens"], theirs["reserved_tokens"]) == (0, 0)
    assert theirs["tasks"]["queued"] == 0
    assert [row["key_prefix"] for row in theirs["by_key"]] == [globex.api_keys.get().prefix]
    acme_prefixes = set(acme.api_keys.values_list("prefix", flat=True))
    assert not acme_prefixes & {row["key_prefix"] for row in theirs["by_key"]}
    assert acme_api.get("/api/v1/usage").body["reserved_tokens"] == 26


def test_usage_needs_a_key(outsider_api):
    assert outsider_api.get("/api/v1/usage").status == 401
