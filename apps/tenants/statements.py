"""Budget statements of the hot path, written by hand (apps.tenants.services runs them).

Reservation: every admission reserves its worst case on the period's ledger
row. One conditional UPDATE, finding the row by its key (tenant, period,
start) and returning its id, replaces a read of the id and an UPDATE.

Settlement as one statement:

Every task's end settles its charge, so this is on the hot path: once an
UPDATE of the charge, a read of it and an UPDATE of the ledger, three ORM
queries (~1 ms of CPU each to compile here). PostgreSQL does it in one
statement: the charge's conditional UPDATE, in a CTE, hands its reservation
to the ledger's UPDATE. SQLite has no data-modifying CTE: there the charge's
UPDATE returns its reservation and a second UPDATE moves it, in the caller's
transaction (SQLite runs one writer at a time, so nothing comes between).

The conditional UPDATE of the charge (``settled_at IS NULL``) stays the
exactly-once guard: of two racing settlements one matches the row, and the
other changes nothing.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.db import connection

from apps.core.fields import column_of, concrete_field
from apps.tenants.models import BudgetLedger, TaskCharge


def _charge_prep(name: str, value: Any) -> Any:
    return concrete_field(TaskCharge, name).get_db_prep_save(value, connection)


def _ledger_prep(name: str, value: Any) -> Any:
    return concrete_field(BudgetLedger, name).get_db_prep_save(value, connection)


@functools.cache
def _reserve_sql(vendor: str, limited: bool) -> str:
    q = connection.ops.quote_name
    reserved, spent = q("reserved_tokens"), q("spent_tokens")
    # The check and the increment are one statement: a racing process
    # re-evaluates the condition against the row as the winner left it.
    within = f" AND {spent} + {reserved} <= %s" if limited else ""
    return (
        f"UPDATE {q(BudgetLedger._meta.db_table)} SET {reserved} = {reserved} + %s "
        f"WHERE {q(column_of(BudgetLedger, 'tenant'))} = %s AND {q('period')} = %s "
        f"AND {q('period_start')} = %s{within} RETURNING {q('id')}"
    )


def reserve(tenant_id: Any, period: str, period_start: datetime, cost_tokens: int, budget: int | None) -> int | None:
    """Add ``cost_tokens`` to the reservations of the tenant's ledger row for this
    period if they fit in ``budget`` (None: no limit); the row's id, or None when
    there is no such row yet or the cost does not fit."""
    params = [cost_tokens, _ledger_prep("tenant", tenant_id), period, _ledger_prep("period_start", period_start)]
    if budget is not None:
        params.append(budget - cost_tokens)
    with connection.cursor() as cursor:
        cursor.execute(_reserve_sql(connection.vendor, budget is not None), params)
        row = cursor.fetchone()
    return None if row is None else row[0]


@functools.cache
def _sql(vendor: str) -> tuple[str, ...]:
    q = connection.ops.quote_name
    charge, ledger = q(TaskCharge._meta.db_table), q(BudgetLedger._meta.db_table)
    reserved, spent = q("reserved_tokens"), q("spent_tokens")
    settle_charge = (
        f"UPDATE {charge} SET {q('settled_at')} = %s, {q('prompt_tokens')} = %s, {q('completion_tokens')} = %s "
        f"WHERE {q('task_id')} = %s AND {q('settled_at')} IS NULL "
        f"RETURNING {q('ledger_id')}, {reserved}"
    )
    if vendor == "postgresql":
        return (
            f"WITH settled AS ({settle_charge}) "
            f"UPDATE {ledger} SET {reserved} = {ledger}.{reserved} - settled.{reserved}, "
            f"{spent} = {ledger}.{spent} + %s "
            f"FROM settled WHERE {ledger}.{q('id')} = settled.{q('ledger_id')} "
            f"RETURNING settled.{reserved}",
        )
    return (
        settle_charge,
        f"UPDATE {ledger} SET {reserved} = {reserved} - %s, {spent} = {spent} + %s WHERE {q('id')} = %s",
    )


def settle(task_id: Any, settled_at: datetime, prompt_tokens: int, completion_tokens: int) -> int | None:
    """Mark the task's charge settled at these counts and move its reservation to
    "spent" as their sum; the tokens it had reserved, or None if it was settled
    already (or never reserved). Call it inside a transaction."""
    charge_params = [
        _charge_prep("settled_at", settled_at), prompt_tokens, completion_tokens, _charge_prep("task_id", task_id)
    ]
    actual = prompt_tokens + completion_tokens
    statements = _sql(connection.vendor)
    with connection.cursor() as cursor:
        if len(statements) == 1:
            cursor.execute(statements[0], [*charge_params, actual])
            row = cursor.fetchone()
            return None if row is None else row[0]
        cursor.execute(statements[0], charge_params)
        row = cursor.fetchone()
        if row is None:
            return None
        ledger_id, reserved_tokens = row
        cursor.execute(statements[1], [reserved_tokens, actual, ledger_id])
        return reserved_tokens
