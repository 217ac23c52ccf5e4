"""API keys: 401 for a missing, wrong, revoked or expired key; 403 for a missing
scope. Every refusal is in the contract's error shape. (A paused tenant's
refusals: test_tenant_pause.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.tasks.models import Task
from apps.tenants.services import issue_api_key, revoke_api_key
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
SUBMISSION = {"model": "echo", "prompt": "hello"}


def _assert_error(response, status, type_, code=None):
    assert response.status == status, response.body
    assert isinstance(response.body, dict), response.body
    assert set(response.body) == {"error"}, response.body
    error = response.body["error"]
    assert set(error) == {"type", "code", "message", "param"}, error
    assert error["type"] == type_, error
    assert error["param"] is None, error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def _assert_401(response, code="invalid_api_key"):
    return _assert_error(response, 401, "authentication_error", code)


def _assert_403(response, code):
    return _assert_error(response, 403, "permission_error", code)


def _calls(api: ApiClient, task_id: str):
    """Every tenant-facing route, each answered in turn."""
    return [
        api.get(TASKS),
        api.post(TASKS, SUBMISSION),
        api.get(f"{TASKS}/{task_id}"),
        api.post(f"{TASKS}/{task_id}/cancel"),
        api.delete(f"{TASKS}/{task_id}"),
        api.get("/api/v1/models"),
    ]


@pytest.fixture
def acme_task(acme_api) -> str:
    created = acme_api.post(TASKS, SUBMISSION)
    assert created.status == 201, created.body
    return created.body["id"]


# --- 401 ----------------------------------------------------------------------------------


def test_no_key_is_401_on_every_route(outsider_api, acme_task):
    for response in _calls(outsider_api, acme_task):
        _assert_401(response, code="missing_api_key")
    assert Task.objects.count() == 1
    assert Task.objects.get().state == "queued"


def test_garbage_key_is_401(acme):
    for key in ("nonsense", "lla_", "lla__", "lla_nope_nope", "sk-" + "a" * 48):
        for response in _calls(ApiClient(key), "00000000-0000-0000-0000-000000000000"):
            _assert_401(response)
    assert Task.objects.count() == 0


def test_wrong_secret_with_a_real_prefix_is_401(acme, acme_key):
    kind, prefix, secret = acme_key.split("_", 2)
    forged = f"{kind}_{prefix}_{'A' * len(secret)}"
    assert forged != acme_key
    for response in _calls(ApiClient(forged), "00000000-0000-0000-0000-000000000000"):
        _assert_401(response)
    assert Task.objects.count() == 0


def test_a_real_prefix_is_not_told_apart_from_an_unknown_one(acme_key):
    _, prefix, secret = acme_key.split("_", 2)
    known_prefix = ApiClient(f"lla_{prefix}_{'B' * len(secret)}").get(TASKS)
    unknown_prefix = ApiClient(f"lla_{'0' * len(prefix)}_{'B' * len(secret)}").get(TASKS)
    assert known_prefix.status == unknown_prefix.status == 401
    assert known_prefix.body == unknown_prefix.body


def test_key_with_extra_characters_is_401(acme_key):
    _assert_401(ApiClient(acme_key + "x").get(TASKS))
    _assert_401(ApiClient(acme_key[:-1]).get(TASKS))


def test_revoked_key_is_401(acme, acme_api, acme_task):
    issued = issue_api_key(acme, name="to revoke")
    api = ApiClient(issued.secret)
    assert api.get(TASKS).status == 200  # works before
    revoke_api_key(issued.api_key)
    for response in _calls(api, acme_task):
        _assert_401(response)
    # The task is untouched and the tenant's other key still works.
    assert Task.objects.get(pk=acme_task).state == "queued"
    assert acme_api.get(TASKS).status == 200


def test_expired_key_is_401(acme, acme_task):
    issued = issue_api_key(acme, name="expired", expires_at=timezone.now() - timedelta(minutes=1))
    for response in _calls(ApiClient(issued.secret), acme_task):
        _assert_401(response)
    assert Task.objects.get(pk=acme_task).state == "queued"


def test_key_expiring_later_works(acme):
    issued = issue_api_key(acme, name="later", expires_at=timezone.now() + timedelta(hours=1))
    assert ApiClient(issued.secret).get(TASKS).status == 200


@pytest.mark.parametrize(
    "header",
    ["Basic {key}", "Token {key}", "Bearer", "Bearer ", "Bearer    ", "{key}", "Bearer: {key}"],
    ids=["basic", "token", "bearer-only", "bearer-space", "bearer-spaces", "bare-key", "bearer-colon"],
)
def test_malformed_authorization_header_is_401(outsider_api, acme_key, header):
    response = outsider_api.get(TASKS, Authorization=header.format(key=acme_key))
    _assert_401(response)


def test_bearer_scheme_is_case_insensitive(outsider_api, acme_key):
    assert outsider_api.get(TASKS, Authorization=f"bearer {acme_key}").status == 200


# --- 403: scopes ---------------------------------------------------------------------------


def test_read_only_key_cannot_write_but_can_read(acme, acme_task):
    api = ApiClient(issue_api_key(acme, name="reader", scopes=["tasks:read"]).secret)

    _assert_403(api.post(TASKS, SUBMISSION), "insufficient_scope")
    _assert_403(api.post(f"{TASKS}/{acme_task}/cancel"), "insufficient_scope")
    _assert_403(api.delete(f"{TASKS}/{acme_task}"), "insufficient_scope")
    assert Task.objects.count() == 1
    task = Task.objects.get()
    assert task.state == "queued" and task.erased_at is None

    listed = api.get(TASKS)
    assert listed.status == 200, listed.body
    assert [t["id"] for t in listed.body["results"]] == [acme_task]
    shown = api.get(f"{TASKS}/{acme_task}")
    assert shown.status == 200, shown.body
    assert shown.body["id"] == acme_task


def test_write_only_key_cannot_read(acme, acme_task):
    api = ApiClient(issue_api_key(acme, name="writer", scopes=["tasks:write"]).secret)
    created = api.post(TASKS, SUBMISSION)
    assert created.status == 201, created.body
    _assert_403(api.get(TASKS), "insufficient_scope")
    _assert_403(api.get(f"{TASKS}/{acme_task}"), "insufficient_scope")


def test_models_need_their_scope(acme):
    no_models = ApiClient(issue_api_key(acme, name="tasks only", scopes=["tasks:read", "tasks:write"]).secret)
    _assert_403(no_models.get("/api/v1/models"), "insufficient_scope")
    models_only = ApiClient(issue_api_key(acme, name="models only", scopes=["models:read"]).secret)
    assert models_only.get("/api/v1/models").status == 200
    _assert_403(models_only.get(TASKS), "insufficient_scope")


def test_key_with_no_scopes_can_do_nothing(acme, acme_task):
    api = ApiClient(issue_api_key(acme, name="nothing", scopes=[]).secret)
    for response in _calls(api, acme_task):
        _assert_403(response, "insufficient_scope")
    assert Task.objects.get(pk=acme_task).state == "queued"
