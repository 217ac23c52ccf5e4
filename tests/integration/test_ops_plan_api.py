"""Operator endpoints for plans and usage: GET/PATCH /api/v1/ops/tenants/{slug}/plan
and GET /api/v1/ops/tenants/{slug}/usage. Staff only — an admin session or an
operator token; never a tenant's API key."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from apps.security.services import issue_operator_token, revoke_operator_token
from apps.tenants.models import Tenant
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

PLAN = "/api/v1/ops/tenants/{}/plan"
USAGE = "/api/v1/ops/tenants/{}/usage"


@pytest.fixture
def operator_user(db):
    return make_operator()


@pytest.fixture
def operator(operator_user) -> Client:
    """A script with an operator token (no session, so no CSRF)."""
    token = issue_operator_token(operator_user, name="tests").secret
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _patch(client: Client, slug: str, body) -> tuple[int, dict]:
    response = client.patch(PLAN.format(slug), json.dumps(body), content_type="application/json")
    return response.status_code, json.loads(response.content)


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return json.loads(response.content)["error"]


def test_an_operator_reads_and_changes_a_tenants_plan(operator, acme, globex):
    read = operator.get(PLAN.format("acme"))
    assert read.status_code == 200, read.content
    assert {k: json.loads(read.content)[k] for k in ("tenant", "plan", "rpm")} == {
        "tenant": "acme", "plan": "default", "rpm": 600,
    }

    status, body = _patch(operator, "acme", {"rpm": 10, "budget_tokens": 5000, "max_priority": "batch", "tpm": None})

    assert status == 200, body
    assert (body["tenant"], body["rpm"], body["budget_tokens"], body["max_priority"], body["tpm"]) == (
        "acme", 10, 5000, "batch", None,
    )
    assert json.loads(operator.get(PLAN.format("acme")).content) == body
    acme.refresh_from_db()
    assert (acme.plan.rpm, acme.plan.budget_tokens) == (10, 5000)
    assert Tenant.objects.get(slug="globex").plan.rpm == 600  # another tenant's plan is untouched


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm": -1}, "rpm"),
        ({"weight": 0}, "weight"),
        ({"max_priority": "urgent"}, "max_priority"),
        ({"budget_period": "year"}, "budget_period"),
        ({"max_queued": "many"}, "max_queued"),
        ({"burst": 5}, "burst"),
        ({"plan": "no-such-plan"}, "plan"),
    ],
)
def test_invalid_changes_are_refused_naming_the_field(operator, acme, body, param):
    before = json.loads(operator.get(PLAN.format("acme")).content)

    status, answer = _patch(operator, "acme", body)

    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert json.loads(operator.get(PLAN.format("acme")).content) == before


def test_an_operator_reads_a_tenants_usage(operator, acme, acme_api):
    assert acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "one two", "max_tokens": 3}).status == 201

    usage = operator.get(USAGE.format("acme"))

    assert usage.status_code == 200, usage.content
    body = json.loads(usage.content)
    assert (body["tenant"], body["reserved_tokens"], body["by_key"][0]["tasks"]) == ("acme", 5, 1)


def test_an_unknown_tenant_is_404(operator):
    assert _error(operator.get(PLAN.format("nobody")), 404)["code"] == "tenant_not_found"
    assert operator.get(USAGE.format("nobody")).status_code == 404


def test_a_staff_session_works_too_with_csrf_on_writes(staff_client, acme):
    assert staff_client.get(PLAN.format("acme")).status_code == 200
    # A session without the CSRF token may not write.
    status, _ = _patch(staff_client, "acme", {"rpm": 5})
    assert status == 403
    assert staff_client.get("/admin/").status_code == 200
    token = staff_client.cookies["csrftoken"].value
    response = staff_client.patch(
        PLAN.format("acme"), json.dumps({"rpm": 5}), content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200, response.content


def test_a_tenants_api_key_is_refused(acme, acme_key):
    tenant = Client(HTTP_AUTHORIZATION=f"Bearer {acme_key}")

    assert _error(tenant.get(PLAN.format("acme")), 403)["code"] == "staff_only"
    assert _error(tenant.get(USAGE.format("acme")), 403)["code"] == "staff_only"
    status, _ = _patch(tenant, "acme", {"rpm": 100000})
    assert status == 403


def test_wrong_revoked_and_missing_credentials_are_refused(operator_user, acme):
    issued = issue_operator_token(operator_user)
    revoke_operator_token(issued.token)

    assert _error(Client(HTTP_AUTHORIZATION=f"Bearer {issued.secret}").get(PLAN.format("acme")), 401)["code"] == (
        "invalid_operator_token"
    )
    forged = issued.secret[:-4] + "AAAA"
    assert Client(HTTP_AUTHORIZATION=f"Bearer {forged}").get(PLAN.format("acme")).status_code == 401
    assert _error(Client().get(PLAN.format("acme")), 403)["code"] == "not_authenticated"


def test_a_token_stops_working_when_its_user_is_no_longer_staff(operator, operator_user, acme):
    assert operator.get(PLAN.format("acme")).status_code == 200

    operator_user.is_staff = False
    operator_user.save(update_fields=["is_staff"])

    assert _error(operator.get(PLAN.format("acme")), 403)["code"] == "staff_only"


def test_an_operator_token_opens_the_other_ops_endpoints(operator):
    assert operator.get("/api/v1/ops/workers").status_code == 200


def test_an_operator_token_is_not_a_tenant_key(operator):
    # Operator tokens reach /api/v1/ops/ only; the tenant API answers 401.
    assert operator.get("/api/v1/usage").status_code == 401
    assert operator.get("/api/v1/tasks").status_code == 401
