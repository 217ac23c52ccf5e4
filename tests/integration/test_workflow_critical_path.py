"""Within a workflow, critical-path work goes first: each node stores the
length of the longest chain waiting on it, and the dispatcher, given one free
slot, hands out the start of the longest chain before shorter work."""

from __future__ import annotations

import os

import pytest

from apps.scheduler.dispatcher import Dispatcher
from apps.tasks.models import Task
from apps.workers import services as worker_services
from tests.integration.graph_support import node, submit_task, submit_workflow

pytestmark = pytest.mark.django_db

CPU_ONLY = {"gpus": [], "cpu_count": 2, "ram_total": None, "ram_available": None}


def _ranks(task_ids) -> dict[str, int]:
    rows = Task.objects.filter(pk__in=list(task_ids)).values_list("id", "critical_path_rank")
    return {str(pk): rank for pk, rank in rows}


def test_ranks_are_stored_at_submission(acme_api, django_capture_on_commit_callbacks):
    nodes = [
        node("short"), node("long1"), node("long2", depends_on=["long1"]), node("long3", depends_on=["long2"]),
        node("join", depends_on=["short", "long3"]),
    ]
    tasks = submit_workflow(acme_api, nodes, django_capture_on_commit_callbacks)
    ranks = _ranks(tasks.values())
    assert {name: ranks[task_id] for name, task_id in tasks.items()} == {
        "short": 1, "long1": 3, "long2": 2, "long3": 1, "join": 0,
    }


def test_a_new_child_raises_its_ancestors_ranks(acme_api, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    a = submit_task(acme_api, capture)["id"]
    b = submit_task(acme_api, capture, depends_on=[a])["id"]
    c = submit_task(acme_api, capture, depends_on=[b])["id"]
    assert _ranks([a, b, c]) == {a: 2, b: 1, c: 0}


def test_one_free_slot_goes_to_the_start_of_the_longest_chain(acme_api, django_capture_on_commit_callbacks):
    worker = worker_services.register_worker(name="one-slot", host="h", pid=os.getpid(), slots=1, device_info=CPU_ONLY)
    worker_services.heartbeat(worker.id, in_flight=0, idle=False, device_info=CPU_ONLY)
    # "short" is given first, so it is the older; "long1" holds up two more nodes.
    tasks = submit_workflow(
        acme_api,
        [node("short"), node("long1"), node("long2", depends_on=["long1"]), node("long3", depends_on=["long2"])],
        django_capture_on_commit_callbacks,
    )

    assert Dispatcher().run_once() == 1

    assert Task.objects.get(pk=tasks["short"]).queued_at <= Task.objects.get(pk=tasks["long1"]).queued_at
    handed = Task.objects.filter(dispatched_at__isnull=False).values_list("pk", flat=True)
    assert [str(pk) for pk in handed] == [tasks["long1"]]
