"""Operators see and edit plans in the admin; the tenant list shows each tenant's plan."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apps.security.services import issue_operator_token
from apps.tenants.models import Plan
from apps.tenants.services import change_tenant_plan, default_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("operator", email="", password=None)
    client = Client()
    client.force_login(user)
    return client


def _plan_form(plan: Plan, **changes) -> dict:
    form = {"name": plan.name, "budget_period": plan.budget_period, "weight": plan.weight,
            "max_priority": plan.max_priority}
    for field in ("rpm", "tpm", "budget_tokens", "max_running", "max_queued"):
        value = getattr(plan, field)
        form[field] = "" if value is None else value
    return form | changes


def test_the_default_plan_exists_before_any_tenant():
    # Created by the data migration, with the model's default values.
    plan = Plan.objects.get(name="default")
    assert (plan.rpm, plan.max_priority, plan.budget_tokens) == (600, "interactive", None)


def test_the_tenant_list_shows_each_tenants_plan(admin_client, acme, globex):
    change_tenant_plan(acme, {"rpm": 5})

    page = admin_client.get("/admin/tenants/tenant/")

    assert page.status_code == 200
    assert "tenant:acme" in page.content.decode()
    assert ">default<" in page.content.decode()


def test_a_tenant_added_in_the_admin_starts_on_the_default_plan(admin_client):
    page = admin_client.get("/admin/tenants/tenant/add/").content.decode()

    assert re.search(rf'<option value="{default_plan().pk}" selected>default</option>', page)


def test_an_operator_edits_a_plan_in_the_admin(admin_client, acme, acme_api):
    plan = default_plan()
    assert admin_client.get("/admin/tenants/plan/").status_code == 200

    saved = admin_client.post(f"/admin/tenants/plan/{plan.pk}/change/", _plan_form(plan, rpm=42, budget_tokens=9000))

    assert saved.status_code == 302, saved.content.decode()[:2000]
    plan.refresh_from_db()
    assert (plan.rpm, plan.budget_tokens) == (42, 9000)
    # Every tenant on the plan works under the new limits at once.
    usage = acme_api.get("/api/v1/usage").body
    assert (usage["plan"]["rpm"], usage["budget_tokens"]) == (42, 9000)


def test_the_admin_refuses_an_invalid_plan(admin_client):
    plan = default_plan()

    refused = admin_client.post(f"/admin/tenants/plan/{plan.pk}/change/", _plan_form(plan, weight=0))

    assert refused.status_code == 200  # the form again, with the error
    assert "weight" in refused.content.decode()
    plan.refresh_from_db()
    assert plan.weight == 1.0


def test_operator_tokens_are_listed_without_their_secret(admin_client, django_user_model):
    staff = django_user_model.objects.create_user("ops", password=None, is_staff=True)
    issued = issue_operator_token(staff, name="deploy script")

    page = admin_client.get("/admin/security/operatortoken/").content.decode()

    assert issued.token.prefix in page and "deploy script" in page
    assert issued.secret not in page and issued.token.token_hash not in page
