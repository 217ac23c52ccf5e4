"""The operator API asks for the Django permission the admin would ask for the same
action, on every endpoint: being staff is not enough. An operator holding the
model permission acts on every tenant; one holding a guardian object permission
on a tenant (view_tenant to read, change_tenant to write) acts on that tenant only."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from guardian.shortcuts import assign_perm

from apps.security.services import issue_operator_token
from apps.tenants.models import Tenant
from apps.workers.services import register_worker
from tests.ops_support import OpsEndpoint, make_operator, operator_permissions, ops_endpoints

pytestmark = pytest.mark.django_db

ENDPOINTS = ops_endpoints()
PLAN = "/api/v1/ops/tenants/{}/plan"
USAGE = "/api/v1/ops/tenants/{}/usage"


def _client(user) -> Client:
    """An operator token's client: no session, so no CSRF in the way."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {issue_operator_token(user).secret}")


def _call(client: Client, endpoint: OpsEndpoint, worker_id: str):
    path = endpoint.path(slug="acme", worker_id=worker_id, name="echo")
    # An empty change: enough to be let in or refused, without changing anything.
    return client.generic(endpoint.method, path, json.dumps({}), content_type="application/json")


def _refused(response) -> dict:
    assert response.status_code == 403, (response.status_code, response.content)
    return json.loads(response.content)["error"]


def _plan_rpm(slug: str) -> int | None:
    return Tenant.objects.select_related("plan").get(slug=slug).plan.rpm


@pytest.fixture
def worker_id(db) -> str:
    return str(register_worker(name="w1", host="h1", pid=1, slots=2, device_info={}).id)


def test_every_operator_endpoint_names_an_existing_permission():
    assert ENDPOINTS, "no operator endpoint found under /api/v1/ops/"
    unnamed = [str(endpoint) for endpoint in ENDPOINTS if endpoint.permission is None]
    assert unnamed == []
    for permission in operator_permissions():
        app_label, codename = permission.split(".")
        assert Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists(), permission


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_staff_lacking_the_endpoints_permission_is_refused(endpoint, acme, worker_id):
    bare = make_operator("bare", permissions=[])
    all_but_this = make_operator("all-but", permissions=sorted(operator_permissions() - {endpoint.permission}))

    for user in (bare, all_but_this):
        error = _refused(_call(_client(user), endpoint, worker_id))
        assert error["code"] == "permission_denied"
        assert endpoint.permission in error["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_the_endpoints_permission_lets_staff_in(endpoint, acme, worker_id):
    only_this = make_operator("only", permissions=[endpoint.permission])
    root = get_user_model().objects.create_superuser("root", email="", password=None)

    for user in (only_this, root):
        # In: answered by the endpoint itself (an empty body may be a 400).
        assert _call(_client(user), endpoint, worker_id).status_code not in (401, 403)


def test_staff_without_permissions_cannot_change_a_plan_or_list_workers(acme):
    staff = _client(make_operator("bare", permissions=[]))
    before = _plan_rpm("acme")

    response = staff.patch(PLAN.format("acme"), json.dumps({"rpm": None, "tpm": None}), content_type="application/json")

    _refused(response)
    assert _plan_rpm("acme") == before
    _refused(staff.get("/api/v1/ops/workers"))


def test_an_object_permission_on_one_tenant_opens_that_tenant_only(acme, globex):
    user = make_operator("acme-ops", permissions=[])
    assign_perm("tenants.view_tenant", user, acme)
    assign_perm("tenants.change_tenant", user, acme)
    ops = _client(user)
    globex_before = _plan_rpm("globex")

    changed = ops.patch(PLAN.format("acme"), json.dumps({"rpm": 7}), content_type="application/json")
    assert changed.status_code == 200, changed.content
    assert _plan_rpm("acme") == 7
    assert ops.get(USAGE.format("acme")).status_code == 200

    error = _refused(ops.patch(PLAN.format("globex"), json.dumps({"rpm": 7}), content_type="application/json"))
    assert "tenants.change_tenant" in error["message"]
    assert _plan_rpm("globex") == globex_before
    _refused(ops.get(PLAN.format("globex")))
    _refused(ops.get(USAGE.format("globex")))
    # Not a tenant's object: the object permission does not reach it.
    _refused(ops.get("/api/v1/ops/workers"))


def test_an_object_permission_to_view_a_tenant_does_not_let_its_plan_be_changed(acme):
    user = make_operator("acme-viewer", permissions=[])
    assign_perm("tenants.view_tenant", user, acme)
    ops = _client(user)

    assert ops.get(PLAN.format("acme")).status_code == 200
    _refused(ops.patch(PLAN.format("acme"), json.dumps({"rpm": 7}), content_type="application/json"))
    assert _plan_rpm("acme") != 7
