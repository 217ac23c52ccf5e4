"""Submitting a dependent costs the same at any depth of a waiting chain.

A new child may lengthen the critical paths of all its waiting ancestors;
raising their ranks walked the whole chain, a round of queries per link,
inside the submission's write transaction (20 ms at link 1, 264 ms at link
250). The rank update is now bounded work in a fixed number of statements, so
the 200th link of a chain costs what the first does. Counted, not timed.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.tasks.graph import RANK_HORIZON
from apps.tasks.models import Task, TaskState
from apps.tasks.services import TaskRequest, submit_task
from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
CHAIN_LENGTH = 200


def _chain(tenant, length: int) -> tuple[str, str]:
    """A chain of ``length`` tasks, each waiting on the one before: (its first id, its last)."""
    head = tail = submit_task(tenant, None, TaskRequest(model="echo", prompt="link")).task.pk
    for _ in range(length - 1):
        tail = submit_task(tenant, None, TaskRequest(model="echo", prompt="link", depends_on=(str(tail),))).task.pk
    return str(head), str(tail)


def _statements_to_submit_a_child_of(api, parent_id: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        created = api.post(TASKS, {"model": "echo", "prompt": "next", "depends_on": [parent_id]})
    assert created.status == 201, created.body
    assert created.body["status"] == TaskState.WAITING
    return len(captured.captured_queries)


def test_a_dependent_at_link_200_costs_the_statements_of_one_at_link_1(acme, acme_api):
    # No queue cap or rate limit in the way of a long chain.
    change_tenant_plan(acme, {"max_queued": None, "rpm": None, "tpm": None, "budget_tokens": None})
    _, short_tail = _chain(acme, 1)
    long_head, long_tail = _chain(acme, CHAIN_LENGTH)
    _statements_to_submit_a_child_of(acme_api, short_tail)  # one-off reads (caches) paid here

    at_link_1 = _statements_to_submit_a_child_of(acme_api, short_tail)
    at_link_200 = _statements_to_submit_a_child_of(acme_api, long_tail)

    assert at_link_200 == at_link_1
    # The ranks still follow the chain as far as they count: its head has 200
    # tasks behind it, which the rank records up to its cap.
    assert Task.objects.get(pk=long_head).critical_path_rank == min(CHAIN_LENGTH, RANK_HORIZON)
    assert Task.objects.get(pk=long_tail).critical_path_rank == 1
