"""PostgreSQL prepares the statements a connection runs again and again
(DB_PREPARE_THRESHOLD, llmagentos/settings.py): it then stops parsing and
planning the hot path's statements on every request (docs/benchmarks.md)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from apps.tenants.statements import plan

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not settings.DATABASE_URL, reason="PostgreSQL only (DATABASE_URL)"),
    pytest.mark.skipif(not getattr(settings, "DB_PREPARE_THRESHOLD", 0), reason="turned off (DB_PREPARE_THRESHOLD=0)"),
]


def _prepared() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        return cursor.fetchone()[0]


def test_a_statement_run_past_the_threshold_is_prepared(acme):
    before = _prepared()
    for _ in range(settings.DB_PREPARE_THRESHOLD + 1):
        plan(acme.plan_id)  # one of the admission's statements
    assert _prepared() > before
