"""GET /api/v1/usage/report: the calling tenant's tasks and tokens over a
period, by day and model, as JSON or CSV; exact figures, only its own tasks,
and a 400 naming since or until for a period it cannot report."""

from __future__ import annotations

import pytest

from apps.tenants.services import issue_api_key
from tests.conftest import ApiClient
from tests.usage_support import ACME_CSV, ACME_ROWS, DAY_1, DAY_2, submit_known_usage

pytestmark = pytest.mark.django_db

REPORT = "/api/v1/usage/report"
PERIOD = {"since": DAY_1, "until": DAY_2}


@pytest.fixture
def known_usage(acme_api, globex_api) -> None:
    submit_known_usage(acme_api, globex_api)


def _rows(body) -> list[tuple]:
    return [(r["day"], r["model"], r["tasks"], r["prompt_tokens"], r["completion_tokens"]) for r in body["rows"]]


def test_the_report_sums_tasks_and_tokens_by_day_and_model(known_usage, acme_api):
    report = acme_api.get(REPORT, PERIOD)

    assert report.status == 200, report.body
    assert (report.body["object"], report.body["since"], report.body["until"]) == ("usage_report", DAY_1, DAY_2)
    assert _rows(report.body) == ACME_ROWS
    assert report.body["totals"] == {"tasks": 5, "prompt_tokens": 8, "completion_tokens": 8, "cost": None}


def test_the_report_as_csv_by_format_or_by_accept(known_usage, acme_api):
    by_format = acme_api.get(REPORT, {**PERIOD, "format": "csv"})
    by_accept = acme_api.get(REPORT, PERIOD, Accept="text/csv")
    for response in (by_format, by_accept):
        assert response.status == 200, response.body
        assert response.headers["Content-Type"].startswith("text/csv")
        assert response.headers["Content-Disposition"] == f'attachment; filename="usage-acme-{DAY_1}-{DAY_2}.csv"'
        assert response.body.decode() == ACME_CSV


def test_a_tenant_sees_only_its_own_usage(known_usage, globex_api):
    report = globex_api.get(REPORT, PERIOD)

    assert _rows(report.body) == [(DAY_1, "echo", 1, 3, 3)]


def test_one_day_and_the_default_period(known_usage, acme_api):
    assert _rows(acme_api.get(REPORT, {"since": DAY_2, "until": DAY_2}).body) == ACME_ROWS[1:]
    # By default the last 30 days up to today: the dated tasks are long before.
    default = acme_api.get(REPORT)
    assert default.status == 200 and default.body["rows"] == []


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"since": "2026-13-01"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"since": "2026-03-01T00:00:00"}, "since"),
        ({"since": DAY_2, "until": DAY_1}, "since"),  # backwards
        ({"since": "2025-01-01", "until": "2026-01-02"}, "until"),  # 367 days
        ({"since": DAY_1, "format": "xml"}, "format"),
        ({"day": DAY_1}, "day"),
    ],
)
def test_a_period_it_cannot_report_is_400_naming_the_field(acme_api, query, param):
    for headers in ({}, {"Accept": "text/csv"}):  # refused in JSON whatever was asked for
        response = acme_api.get(REPORT, query, **headers)
        assert response.status == 400, response.body
        assert response.body["error"]["param"] == param, response.body


def test_the_longest_period_is_a_leap_year(acme_api):
    assert acme_api.get(REPORT, {"since": "2024-01-01", "until": "2024-12-31"}).status == 200


def test_the_report_needs_the_usage_scope(acme):
    tasks_only = ApiClient(issue_api_key(acme, name="tasks only", scopes=["tasks:read", "tasks:write"]).secret)
    response = tasks_only.get(REPORT, PERIOD)
    assert (response.status, response.body["error"]["code"]) == (403, "insufficient_scope")
