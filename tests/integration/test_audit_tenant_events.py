"""Tenants paused, resumed, changed, moved to another plan or deleted leave audit
events: from the admin, the operator plan API and set_plan. A deleted tenant's
history stays, still naming it."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from apps.security.services import issue_operator_token
from apps.tenants.models import AuditEvent, Plan, Tenant
from apps.tenants.services import default_plan
from tests.audit_support import (
    OPERATOR_ADDRESS,
    assert_by_operator,
    events,
    only_event,
    signed_in_operator,
    tenant_form,
)
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    return signed_in_operator()


def _save(client: Client, tenant: Tenant, **changes) -> None:
    saved = client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant, **changes))
    assert saved.status_code == 302, saved.content.decode()[:3000]
    tenant.refresh_from_db()


def test_a_tenant_added_in_the_admin(operator):
    client, user = operator
    form = {"name": "Initech", "slug": "initech", "plan": default_plan().pk, "active": "on",
            "output_retention_days": "", "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0}

    added = client.post("/admin/tenants/tenant/add/", form)

    assert added.status_code == 302, added.content.decode()[:3000]
    event = only_event("tenant_created")
    assert_by_operator(event, user, Tenant.objects.get(slug="initech"))
    assert event.changes == {"name": [None, "Initech"], "slug": [None, "initech"], "plan": [None, "default"],
                             "active": [None, True]}


def test_pausing_and_resuming_in_the_admin(operator, acme):
    client, user = operator

    _save(client, acme, active=None)
    _save(client, acme, active="on")
    _save(client, acme)  # nothing changed: nothing recorded

    paused, resumed = only_event("tenant_paused"), only_event("tenant_resumed")
    assert_by_operator(paused, user, acme)
    assert_by_operator(resumed, user, acme)
    assert (paused.changes, resumed.changes) == ({"active": [True, False]}, {"active": [False, True]})
    assert paused.id < resumed.id
    assert not events("tenant_changed", "plan_changed")


def test_renaming_and_moving_to_another_plan_in_the_admin(operator, acme):
    client, user = operator
    pro = Plan.objects.create(name="pro", rpm=6000)

    _save(client, acme, name="Acme Inc", plan=pro.pk)

    changed, moved = only_event("tenant_changed"), only_event("plan_changed")
    assert_by_operator(changed, user, acme)
    assert changed.changes == {"name": ["Acme Corp", "Acme Inc"]}
    assert_by_operator(moved, user, acme)
    assert moved.changes == {"plan": ["default", "pro"], "rpm": [600, 6000]}


def test_a_plan_changed_through_the_ops_api_names_the_operator(acme):
    user = make_operator("planner")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {issue_operator_token(user).secret}", REMOTE_ADDR=OPERATOR_ADDRESS)

    changed = api.patch("/api/v1/ops/tenants/acme/plan", {"rpm": 10, "tpm": None}, content_type="application/json")
    assert changed.status_code == 200, changed.content

    event = only_event("plan_changed")
    assert_by_operator(event, user, acme)
    # The default plan is shared: acme got a copy of its own, then the new limits.
    assert event.changes == {"plan": ["default", "tenant:acme"], "rpm": [600, 10], "tpm": [1_000_000, None]}
    assert event.target == "plan tenant:acme"


def test_set_plan_is_the_systems_and_an_unchanged_plan_records_nothing(acme):
    call_command("set_plan", "acme", stdout=io.StringIO())  # prints the plan, changes nothing
    assert not events("plan_changed")

    call_command("set_plan", "acme", "--max-priority", "batch", stdout=io.StringIO())

    event = only_event("plan_changed")
    assert (event.actor_kind, event.source_address, event.tenant_slug) == ("system", None, "acme")
    assert event.changes["max_priority"] == ["interactive", "batch"]


def test_editing_a_shared_plan_in_the_admin_is_one_event_for_the_plan(operator, acme, globex):
    client, user = operator
    plan = default_plan()
    form = {"name": plan.name, "budget_period": plan.budget_period, "weight": 2.5, "max_priority": plan.max_priority,
            "rpm": 42, "tpm": plan.tpm, "budget_tokens": "", "max_running": plan.max_running,
            "max_queued": plan.max_queued}

    saved = client.post(f"/admin/tenants/plan/{plan.pk}/change/", form)

    assert saved.status_code == 302, saved.content.decode()[:3000]
    event = only_event("plan_changed")
    assert_by_operator(event, user, None)
    assert (event.target, event.changes) == ("plan default", {"rpm": [600, 42], "weight": [1.0, 2.5]})


def test_a_deleted_tenants_history_stays_and_still_names_it(operator, acme):
    client, user = operator
    _save(client, acme, active=None)
    tenant_id = acme.pk

    deleted = client.post(f"/admin/tenants/tenant/{tenant_id}/delete/", {"post": "yes"})

    assert deleted.status_code == 302, deleted.content.decode()[:3000]
    assert not Tenant.objects.filter(pk=tenant_id).exists()
    assert_by_operator(only_event("tenant_deleted"), user, acme)
    history = AuditEvent.objects.filter(tenant_id=tenant_id)
    assert {event.action for event in history} == {"tenant_created", "tenant_paused", "tenant_deleted"}
    assert {event.tenant_slug for event in history} == {"acme"}
