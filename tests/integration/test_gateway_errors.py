"""/v1's refusals: OpenAI's error shape with the Contracts' statuses, codes and
headers — the same admission and keys as /api/v1, and OpenAI's 404
model_not_found where /api/v1 answers 400."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from apps.catalog.models import LLMModel
from apps.tasks.models import Task
from apps.tenants.services import change_tenant_plan, issue_api_key, revoke_api_key
from tests.conftest import ApiClient
from tests.integration.gateway_support import CHAT, COMPLETIONS, streamed_headers

pytestmark = pytest.mark.django_db

BODY = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}


def _error(response, status: int, error_type: str, code: str, param: str | None = None) -> dict:
    assert response.status == status, response.body
    assert set(response.body) == {"error"}, response.body
    error = response.body["error"]
    assert (error["type"], error["code"], error["param"]) == (error_type, code, param), error
    assert error["message"], error
    assert response.headers["X-Request-ID"]
    return error


def test_no_key_a_wrong_key_a_revoked_and_an_expired_key_are_401(db, acme):
    revoked = issue_api_key(acme, name="old")
    revoke_api_key(revoked.api_key)
    expired = issue_api_key(acme, name="expired", expires_at=timezone.now() - timedelta(seconds=1))

    for api, code in (
        (ApiClient(None), "missing_api_key"),
        (ApiClient("lla_nope_nope"), "invalid_api_key"),
        (ApiClient(revoked.secret), "invalid_api_key"),
        (ApiClient(expired.secret), "invalid_api_key"),
    ):
        for response in (api.post(CHAT, BODY), api.get("/v1/models")):
            _error(response, 401, "authentication_error", code)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert Task.objects.count() == 0


def test_a_key_without_the_scope_or_of_a_paused_tenant_is_403(acme):
    reader = ApiClient(issue_api_key(acme, name="reader", scopes=["tasks:read"]).secret)
    writer = ApiClient(issue_api_key(acme, name="writer", scopes=["tasks:write"]).secret)

    _error(reader.post(CHAT, BODY), 403, "permission_error", "insufficient_scope")
    _error(writer.get("/v1/models"), 403, "permission_error", "insufficient_scope")

    acme.active = False
    acme.save(update_fields=["active"])
    full = ApiClient(issue_api_key(acme, name="full").secret)
    _error(full.post(COMPLETIONS, {"model": "echo", "prompt": "hi"}), 403, "permission_error", "tenant_paused")
    assert Task.objects.count() == 0


def test_an_unknown_model_is_404_model_not_found_on_v1_and_400_on_api_v1(acme_api, globex):
    private = LLMModel.objects.create(name="globex-only", adapter="echo", is_public=False)
    private.allowed_tenants.add(globex)

    for name in ("no-such-model", "globex-only", "echo@v999"):
        _error(acme_api.post(CHAT, {**BODY, "model": name}), 404, "not_found_error", "model_not_found", "model")
        _error(
            acme_api.post(COMPLETIONS, {"model": name, "prompt": "hi"}), 404, "not_found_error", "model_not_found",
            "model",
        )
        _error(
            acme_api.post("/api/v1/tasks", {"model": name, "prompt": "hi"}), 400, "invalid_request_error",
            "model_not_found", "model",
        )
    assert Task.objects.count() == 0


def test_over_the_budget_is_402_budget_exceeded(acme, acme_api):
    change_tenant_plan(acme, {"budget_tokens": 3})

    _error(acme_api.post(CHAT, BODY), 402, "insufficient_budget", "budget_exceeded")
    assert Task.objects.count() == 0


def test_over_the_rate_limit_is_429_with_retry_after(acme, acme_key, acme_api):
    change_tenant_plan(acme, {"rpm": 1, "tpm": None})
    accepted = streamed_headers(acme_key, CHAT, BODY)
    assert (accepted["X-RateLimit-Limit"], accepted["X-RateLimit-Remaining"]) == ("1", "0")

    refused = acme_api.post(CHAT, BODY)

    _error(refused, 429, "rate_limit_error", "rate_limited")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert "X-Task-ID" not in refused.headers
    assert Task.objects.count() == 1


def _database_down(execute, sql, params, many, context):
    raise OperationalError("connection to the database was lost (injected)")


def test_a_database_failure_is_503_with_retry_after(acme_api):
    with connection.execute_wrapper(_database_down):
        responses = [acme_api.post(CHAT, BODY), acme_api.get("/v1/models")]

    for response in responses:
        _error(response, 503, "service_unavailable", "dependency_unavailable")
        assert int(response.headers["Retry-After"]) > 0


def test_other_methods_and_unknown_routes_answer_in_the_same_shape(acme_api):
    _error(acme_api.get(CHAT), 405, "invalid_request_error", "method_not_allowed")
    assert acme_api.get(CHAT).headers["Allow"] == "POST"
    _error(acme_api.post("/v1/models", {}), 405, "invalid_request_error", "method_not_allowed")
    _error(acme_api.post("/v1/embeddings", {"model": "echo", "input": "x"}), 404, "not_found_error", "not_found")

