"""A tenant's usage report in the admin: linked from the tenant's page, a
period form, the rows by day and model, and the CSV download, which is the
tenant's own CSV from GET /api/v1/usage/report to the byte. Operators without
the budget ledger's view permission are refused it."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.ops_support import make_operator
from tests.usage_support import ACME_CSV, DAY_1, DAY_2, submit_known_usage

pytestmark = pytest.mark.django_db

SEES_USAGE = ("tenants.view_tenant", "tenants.view_budgetledger")


def _operator(*permissions: str) -> Client:
    client = Client()
    client.force_login(make_operator("usage-ops", permissions=permissions))
    return client


def _report(tenant) -> str:
    return f"/admin/tenants/tenant/{tenant.pk}/usage/"


def test_the_report_page_and_its_csv(acme, acme_api, globex_api):
    submit_known_usage(acme_api, globex_api)
    client = _operator(*SEES_USAGE)

    assert f'href="{_report(acme)}"' in client.get(f"/admin/tenants/tenant/{acme.pk}/change/").content.decode()
    page = client.get(_report(acme), {"since": DAY_1, "until": DAY_2})
    text = page.content.decode()
    assert page.status_code == 200
    assert '<td>2026-03-02</td><td>echo-b</td><td>1</td><td>2</td><td>2</td>' in text
    assert "<th>5</th><th>8</th><th>8</th>" in text  # the totals
    assert f'href="?since={DAY_1}&amp;until={DAY_2}&amp;download=csv"' in text

    download = client.get(_report(acme), {"since": DAY_1, "until": DAY_2, "download": "csv"})

    assert download["Content-Type"].startswith("text/csv")
    assert download["Content-Disposition"] == f'attachment; filename="usage-acme-{DAY_1}-{DAY_2}.csv"'
    assert download.content.decode() == ACME_CSV
    api = acme_api.get("/api/v1/usage/report", {"since": DAY_1, "until": DAY_2, "format": "csv"})
    assert api.body == download.content


def test_a_period_it_cannot_report_is_a_form_error(acme):
    client = _operator(*SEES_USAGE)

    backwards = client.get(_report(acme), {"since": DAY_2, "until": DAY_1, "download": "csv"})

    assert backwards["Content-Type"].startswith("text/html")  # the form again, not a file
    assert "is after until" in backwards.content.decode()
    too_long = client.get(_report(acme), {"since": "2024-01-01", "until": "2025-06-01"})
    assert "a report covers at most 366" in too_long.content.decode()


def test_without_the_ledger_permission_there_is_no_report(acme):
    client = _operator("tenants.view_tenant")

    assert client.get(_report(acme)).status_code == 403
    assert _report(acme) not in client.get(f"/admin/tenants/tenant/{acme.pk}/change/").content.decode()
