"""The two operator groups (made by a data migration) hold the permissions the
operator API asks for: "operator" every one, "read-only operator" the reading ones
and nothing that changes anything."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from apps.security.services import issue_operator_token
from tests.ops_support import make_operator, ops_endpoints

pytestmark = pytest.mark.django_db

ENDPOINTS = ops_endpoints()


def _held(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_each_group_holds_what_each_operator_endpoint_asks_for(endpoint):
    assert endpoint.permission in _held("operator")
    assert (endpoint.permission in _held("read-only operator")) == (endpoint.method == "GET")


def test_read_only_operators_only_view_and_nobody_deletes():
    read_only, operator = _held("read-only operator"), _held("operator")
    assert read_only and all(p.split(".")[1].startswith("view_") for p in read_only)
    assert read_only <= operator
    assert not any(p.split(".")[1].startswith("delete_") for p in operator)
    assert {"tenants.add_tenant", "tenants.change_plan", "catalog.add_llmmodel", "workers.change_worker",
            "tasks.change_task"} <= operator


def test_a_staff_user_in_the_read_only_group_reads_and_cannot_change(acme):
    user = make_operator("reader", permissions=[])
    user.groups.add(Group.objects.get(name="read-only operator"))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {issue_operator_token(user).secret}")
    assert client.get("/api/v1/ops/tenants/acme/plan").status_code == 200
    refused = client.patch("/api/v1/ops/tenants/acme/plan", '{"rpm": 1}', content_type="application/json")
    assert refused.status_code == 403


def test_both_groups_may_read_the_audit_log():
    assert "tenants.view_auditevent" in _held("read-only operator")
    assert "tenants.view_auditevent" in _held("operator")
