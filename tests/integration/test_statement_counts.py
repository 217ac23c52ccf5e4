"""How many SQL statements one request costs on each path, against stated bounds.

CPU per request is the platform's budget (issue 8: 100 streamed requests/s on
2 cores leaves ≤ 20 ms across every process), and each statement costs a
round trip plus, through the ORM, about 1 ms of compilation here. These
bounds fail a change that quietly adds statements to the hot path; each says
what it is made of. Counted: every statement the database runs, except the
BEGIN and COMMIT that Django logs on SQLite only (PostgreSQL's are not
logged). On-commit effects count: they are part of the request (the test
runs with real commits).
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.models.sql.query import Query
from django.test.utils import CaptureQueriesContext

from apps.runtime.execution import execute_task
from apps.scheduler.admission import settle_task
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# Bounds by back end: SQLite keeps the rate-limit buckets and the stream log in
# the database, where the distributed mode has Redis; and it has no
# data-modifying CTE, so settlement is two statements there.

# Submission through the API (POST /api/v1/tasks): the key's lookup (with its
# tenant and its creator's role), the model's resolution (with its current or
# pinned version); in one transaction the plan, the tenant's admission lock, its
# queue count, the budget reservation (one conditional UPDATE of the period's
# ledger row, returning its id), the charge's insert, (SQLite) the rate-limit
# buckets' UPDATE, returning their times, the task's insert; then the response's
# wait estimate (queue counts, slots, recent service times). All but the wait
# estimate are built once per process and run through a cursor
# (apps.tenants.statements, apps.catalog.statements, apps.scheduler.admission_reads,
# apps.core.rows.insert).
SUBMISSION_BOUND = {"sqlite": 12, "postgresql": 11}
# A dispatch round handing out one task: the ready tasks with their
# reservations and tenants' weights and running caps (one read), the tasks that
# ended since (to correct the fair-share tags), the tasks in flight, the
# workers' slots, and the conditional UPDATE marking it dispatched.
DISPATCH_BOUND = {"sqlite": 5, "postgresql": 5}
# A worker running the task (execute_task): the claim, one UPDATE … RETURNING
# with the task's tenant, model and version; (SQLite) a chunk insert for the
# first token (sent at once) and one for the rest (coalesced); the finish, one
# conditional UPDATE deciding succeeded or cancelled, with the settlement in its
# transaction, and the task's webhook (its own callback or its tenant's: one
# joined read, apps.webhooks.services.callback_of); after the commit, the
# dependants' lookup and (SQLite) the end event's insert. Every one of them is
# hand-written and built once per process (no ORM compilation on this path).
WORKER_BOUND = {"sqlite": 9, "postgresql": 5}
# Settlement alone: the charge's conditional UPDATE hands its reservation to
# the ledger's UPDATE (one statement through a data-modifying CTE on PostgreSQL).
SETTLEMENT_BOUND = {"sqlite": 2, "postgresql": 1}


def _statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT")]


def _submit(api, prompt: str = "the quick brown fox") -> uuid.UUID:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    return uuid.UUID(created.body["id"])


@pytest.fixture
def warmed(acme_api, dispatcher, model_queues):
    """One task through every path first: a first request pays one-off reads
    (the ledger row's creation, caches) that the bounds are not about."""
    model_queues("echo")
    task_id = _submit(acme_api, "warm up")
    dispatcher.run_once()
    execute_task(task_id)
    return dispatcher


def test_a_submission_through_the_api_stays_within_its_bound(acme_api, warmed):
    with CaptureQueriesContext(connection) as captured:
        _submit(acme_api)

    statements = _statements(captured)
    assert len(statements) <= SUBMISSION_BOUND[connection.vendor], "\n".join(statements)


def test_a_dispatch_round_stays_within_its_bound(acme_api, warmed):
    task_id = _submit(acme_api)

    with CaptureQueriesContext(connection) as captured:
        handed = warmed.run_once()

    assert handed == 1
    statements = _statements(captured)
    assert len(statements) <= DISPATCH_BOUND[connection.vendor], "\n".join(statements)
    assert Task.objects.get(pk=task_id).dispatched_at is not None


def test_a_worker_claims_runs_and_finishes_a_task_within_its_bound(acme_api, warmed):
    task_id = _submit(acme_api)
    warmed.run_once()

    with CaptureQueriesContext(connection) as captured:
        execute_task(task_id)

    task = Task.objects.get(pk=task_id)
    assert task.state == TaskState.SUCCEEDED
    statements = _statements(captured)
    assert len(statements) <= WORKER_BOUND[connection.vendor], "\n".join(statements)


def test_a_worker_compiles_no_orm_query(acme_api, warmed, monkeypatch):
    """The worker's statements are all hand-written, built once per process: each ORM
    query would cost its compilation (~1 ms of CPU here) on every task."""
    task_id = _submit(acme_api)
    warmed.run_once()
    compiled: list[str] = []
    get_compiler = Query.get_compiler

    def counting(query, *args, **kwargs):
        compiled.append(f"{query.__class__.__name__} on {query.model.__name__ if query.model else '-'}")
        return get_compiler(query, *args, **kwargs)

    monkeypatch.setattr(Query, "get_compiler", counting)
    execute_task(task_id)
    monkeypatch.undo()

    assert Task.objects.get(pk=task_id).state == TaskState.SUCCEEDED
    assert compiled == []


def test_a_settlement_is_within_its_bound_and_settles_once(acme_api, warmed):
    task_id = _submit(acme_api)
    usage = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}

    with CaptureQueriesContext(connection) as captured:
        assert settle_task(task_id, usage) is True

    statements = _statements(captured)
    assert len(statements) <= SETTLEMENT_BOUND[connection.vendor], "\n".join(statements)
    assert settle_task(task_id, usage) is False  # exactly once: the second finds nothing to settle
