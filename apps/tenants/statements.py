"""Statements of the hot path, written by hand (apps.tenants.services and
apps.tenants.ratelimit run them): each is built once per process and database
and runs through a cursor (the ORM compiles a query in about 1 ms of CPU here,
a cursor runs the same SQL in about 0.1 ms; docs/benchmarks.md).

Every request: the API key by its prefix, with its tenant and its creator's
current role, in one read.

Every admission, in the order apps.scheduler.admission runs them: the plan,
the tenant's admission lock, the budget reservation and its charge, and (no
Redis) the rate-limit buckets.

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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from apps.core.fields import column_of, concrete_field, foreign_key
from apps.core.rows import ModelColumns, quote, reader
from apps.tenants.models import CREATOR_ROLE, ApiKey, BudgetLedger, Membership, Plan, QuotaState, TaskCharge, Tenant


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


# --- The API key of a request -----------------------------------------------------------------


@dataclass(frozen=True)
class _KeyRead:
    sql: str
    key: ModelColumns
    tenant: ModelColumns
    role: Any  # Membership.role as the ORM returns it


@functools.cache
def _key_read(vendor: str, alias: str) -> _KeyRead:
    q = functools.partial(quote, connection)
    key, tenant = ModelColumns(ApiKey, connection), ModelColumns(Tenant, connection)
    user_model = foreign_key(Membership, "user").related_model
    assert isinstance(user_model, type)
    member, user = q(Membership._meta.db_table), q(user_model._meta.db_table)

    def member_col(name: str) -> str:
        return f"{member}.{q(column_of(Membership, name))}"

    def key_col(name: str) -> str:
        return f"{key.table}.{q(column_of(ApiKey, name))}"

    # ApiKeyQuerySet.with_creator_role: the creator's membership while the creator is active.
    role = (
        f"(SELECT {member_col('role')} FROM {member} INNER JOIN {user} "
        f"ON {member_col('user')} = {user}.{q(column_of(user_model, 'id'))} "
        f"WHERE {member_col('tenant')} = {key_col('tenant')} AND {member_col('user')} = {key_col('created_by')} "
        f"AND {user}.{q(column_of(user_model, 'is_active'))} LIMIT 1)"
    )
    sql = (
        f"SELECT {', '.join(key.own() + tenant.own())}, {role} FROM {key.table} "
        f"INNER JOIN {tenant.table} ON {tenant.table}.{q(column_of(Tenant, 'id'))} = {key_col('tenant')} "
        f"WHERE {key_col('prefix')} = %s"
    )
    return _KeyRead(sql, key, tenant, reader(Membership, "role", connection))


def api_key(prefix: str) -> ApiKey | None:
    """The key with this prefix (unique), its tenant loaded and its creator's current role
    read (``ApiKey.acting_role`` asks nothing more), or None; usable or not."""
    read = _key_read(connection.vendor, connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(read.sql, [concrete_field(ApiKey, "prefix").get_db_prep_value(prefix, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(read.key)
    key = read.key.build(row[:width], connection.alias)
    assert isinstance(key, ApiKey)
    foreign_key(ApiKey, "tenant").set_cached_value(key, read.tenant.build(row[width:-1], connection.alias))
    setattr(key, CREATOR_ROLE, read.role(row[-1]))
    return key


# --- Admission ------------------------------------------------------------------------------


@functools.cache
def _plan_read(vendor: str, alias: str) -> tuple[str, ModelColumns]:
    plan = ModelColumns(Plan, connection)
    pk = quote(connection, column_of(Plan, "id"))
    return f"SELECT {', '.join(plan.own())} FROM {plan.table} WHERE {plan.table}.{pk} = %s", plan


def plan(plan_id: int) -> Plan:
    """The plan as it is now (``Plan.objects.get``: Plan.DoesNotExist if there is none)."""
    sql, columns = _plan_read(connection.vendor, connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(sql, [plan_id])
        row = cursor.fetchone()
    if row is None:
        raise Plan.DoesNotExist(f"{Plan._meta.object_name} matching query does not exist.")
    found = columns.build(row, connection.alias)
    assert isinstance(found, Plan)
    return found


@functools.cache
def _lock_read(vendor: str, alias: str) -> tuple[str, ModelColumns]:
    state = ModelColumns(QuotaState, connection)
    # What select_for_update() writes: a row lock where the database has them (PostgreSQL);
    # SQLite serializes writers already and takes nothing here.
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    tenant = quote(connection, column_of(QuotaState, "tenant"))
    return f"SELECT {', '.join(state.own())} FROM {state.table} WHERE {state.table}.{tenant} = %s{lock}", state


def lock_quota_state(tenant_id: Any) -> QuotaState | None:
    """The tenant's QuotaState row, locked until the end of the transaction; None if it has none."""
    sql, columns = _lock_read(connection.vendor, connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(sql, [concrete_field(QuotaState, "tenant").get_db_prep_value(tenant_id, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    state = columns.build(row, connection.alias)
    assert isinstance(state, QuotaState)
    return state


RATE_BUCKETS = ("requests_tat", "tokens_tat")


@functools.cache
def _take_sql(vendor: str, alias: str, limited: tuple[str, ...]) -> str:
    q = functools.partial(quote, connection)
    table = q(QuotaState._meta.db_table)
    # Greatest() as the ORM writes it: GREATEST on PostgreSQL, the two-argument MAX on SQLite.
    greatest = "MAX" if vendor == "sqlite" else "GREATEST"
    new = {name: f"{greatest}({table}.{q(name)}, %s) + %s" for name in limited}
    return (
        f"UPDATE {table} SET {', '.join(f'{q(name)} = {value}' for name, value in new.items())} "
        f"WHERE {table}.{q(column_of(QuotaState, 'tenant'))} = %s "
        f"{''.join(f'AND {value} <= %s ' for value in new.values())}"
        f"RETURNING {', '.join(q(name) for name in RATE_BUCKETS)}"
    )


def take_rate_buckets(
    tenant_id: Any, now: float, added: dict[str, float], ceiling: float
) -> tuple[float, float] | None:
    """Move each bucket named in ``added`` (of RATE_BUCKETS) to max(its time, ``now``) plus its
    addition, if every one stays within ``ceiling``; the buckets' times after, or None when one
    would not fit (or the tenant has no row) and nothing changed. Check and change are one
    statement: a racing process re-evaluates the condition on the row as the winner left it."""
    limited = tuple(name for name in RATE_BUCKETS if name in added)
    tenant = concrete_field(QuotaState, "tenant").get_db_prep_value(tenant_id, connection)
    params: list[Any] = [value for name in limited for value in (now, added[name])]
    params.append(tenant)
    params.extend(value for name in limited for value in (now, added[name], ceiling))
    with connection.cursor() as cursor:
        cursor.execute(_take_sql(connection.vendor, connection.alias, limited), params)
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1])


@functools.cache
def _buckets_sql(vendor: str, alias: str) -> str:
    q = functools.partial(quote, connection)
    return (
        f"SELECT {', '.join(q(name) for name in RATE_BUCKETS)} FROM {q(QuotaState._meta.db_table)} "
        f"WHERE {q(column_of(QuotaState, 'tenant'))} = %s"
    )


def rate_buckets(tenant_id: Any) -> tuple[float, float] | None:
    """The tenant's rate-limit buckets' times, or None when it has no QuotaState row."""
    with connection.cursor() as cursor:
        cursor.execute(
            _buckets_sql(connection.vendor, connection.alias),
            [concrete_field(QuotaState, "tenant").get_db_prep_value(tenant_id, connection)],
        )
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1])
