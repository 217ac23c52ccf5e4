"""Operators read the audit log in the admin: filtered by action and tenant, searched
by actor and target, and exported as CSV, the export holding exactly the rows the
list's filters select. Staff without the permission to view it get neither."""

from __future__ import annotations

import csv
import io
import json

import pytest

from apps.tenants import audit
from apps.tenants.models import AuditAction, AuditEvent
from tests.audit_support import signed_in_operator
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

LIST = "/admin/tenants/auditevent/"
EXPORT = "/admin/tenants/auditevent/export.csv"


@pytest.fixture
def operator():
    return signed_in_operator()[0]


@pytest.fixture
def logged(acme, globex):
    """Known events beside the fixtures' own (tenant_created, key_created)."""
    audit.record(AuditAction.TENANT_PAUSED, tenant=acme, target="tenant acme", changes={"active": [True, False]})
    audit.record(AuditAction.TENANT_PAUSED, tenant=globex, target="tenant globex")
    audit.record(AuditAction.ROLE_CHANGED, tenant=acme, target="member wile", changes={"role": ["viewer", "admin"]})
    # Text someone else chose (a username tried at the login form, a key's name), shaped like a formula.
    audit.record(AuditAction.OPERATOR_LOGIN_FAILED, actor=audit.ANONYMOUS, target="=HYPERLINK(\"http://x\")")


def _export(client, query: str = "") -> list[dict[str, str]]:
    response = client.get(EXPORT + query)
    assert response.status_code == 200, response.content[:2000]
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_list_filters_by_action_and_tenant_and_links_its_export(operator, logged):
    page = operator.get(LIST, {"action": "tenant_paused", "tenant_slug": "acme"})

    assert page.status_code == 200
    shown = list(page.context["cl"].result_list)
    assert [(event.action, event.tenant_slug) for event in shown] == [("tenant_paused", "acme")]
    assert f'href="{EXPORT}?action=tenant_paused&amp;tenant_slug=acme"' in page.content.decode()


def test_the_export_holds_the_filtered_rows_only(operator, logged, acme):
    rows = _export(operator, "?action=tenant_paused&tenant_slug=acme")

    assert len(rows) == 1
    row = rows[0]
    assert (row["action"], row["tenant"], row["tenant_id"], row["target"]) == (
        "tenant_paused", "acme", str(acme.pk), "tenant acme",
    )
    assert (row["actor_kind"], row["actor"]) == ("system", "")
    assert json.loads(row["changes"]) == {"active": [True, False]}


def test_the_export_follows_the_search_and_the_date_and_defuses_formulas(operator, logged):
    searched = _export(operator, "?q=wile")
    assert [(row["action"], row["target"]) for row in searched] == [("role_changed", "member wile")]

    event = AuditEvent.objects.get(action="role_changed")
    day = f"?time__year={event.time.year}&time__month={event.time.month}&time__day={event.time.day}"
    assert len(_export(operator, day)) == AuditEvent.objects.count()
    assert _export(operator, f"?time__year={event.time.year - 1}") == []

    failed = _export(operator, "?action=operator_login_failed")
    assert [row["target"] for row in failed] == ["'=HYPERLINK(\"http://x\")"]  # a spreadsheet shows it as text


def test_without_the_view_permission_there_is_neither_list_nor_export(client, logged):
    client.force_login(make_operator("no-audit", permissions=[]))

    assert client.get(LIST).status_code == 403
    assert client.get(EXPORT).status_code == 403
