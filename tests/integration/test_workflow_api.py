"""POST /api/v1/workflows and GET /api/v1/workflows/{id}: each node's state,
the graph's derived status, and cancelling a whole workflow."""

from __future__ import annotations

import uuid

import pytest

from apps.tasks import services
from apps.tasks.models import Task, TaskState
from tests.integration.graph_support import WORKFLOWS, node, run, submit_workflow

pytestmark = pytest.mark.django_db


def test_a_workflow_is_shown_node_by_node_as_it_runs(acme_api, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    with capture(execute=True):
        created = acme_api.post(WORKFLOWS, {"nodes": [node("fetch"), node("sum", "{{fetch.output}}", ["fetch"]),
                                                      node("check", depends_on=["fetch", "sum"])]})
    assert created.status == 201, created.body
    assert set(created.body) == {"id", "object", "created_at", "tasks"}
    tasks = created.body["tasks"]
    assert list(tasks) == ["fetch", "sum", "check"]
    url = f"{WORKFLOWS}/{created.body['id']}"

    shown = acme_api.get(url).body
    assert shown["id"] == created.body["id"] and shown["status"] == "queued"
    assert {name: (t["id"], t["status"], t["depends_on"]) for name, t in shown["tasks"].items()} == {
        "fetch": (tasks["fetch"], "queued", []),
        "sum": (tasks["sum"], "waiting", ["fetch"]),
        "check": (tasks["check"], "waiting", ["fetch", "sum"]),
    }
    # Each node is a task like any other.
    task = acme_api.get(f"/api/v1/tasks/{tasks['check']}").body
    assert task["workflow"] == created.body["id"]
    assert task["depends_on"] == [tasks["fetch"], tasks["sum"]]

    run(tasks["fetch"], capture)
    assert acme_api.get(url).body["status"] == "running"
    run(tasks["sum"], capture)
    run(tasks["check"], capture)
    shown = acme_api.get(url).body
    assert shown["status"] == "succeeded"
    assert all(t["status"] == "succeeded" and t["error"] is None and t["finished_at"] for t in shown["tasks"].values())


def test_cancelling_a_workflow_cancels_every_unfinished_node(acme_api, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    tasks = submit_workflow(
        acme_api,
        [node("done"), node("busy"), node("next", depends_on=["busy"]), node("last", depends_on=["next", "done"])],
        capture,
    )
    run(tasks["done"], capture)
    services.claim_task(uuid.UUID(tasks["busy"]), "worker-a")  # running

    with capture(execute=True):
        cancelled = acme_api.post(f"{WORKFLOWS}/{Task.objects.get(pk=tasks['done']).workflow_id}/cancel")

    assert cancelled.status == 200, cancelled.body
    nodes = cancelled.body["tasks"]
    assert nodes["done"]["status"] == "succeeded"
    assert nodes["busy"]["status"] == "running"  # it stops at its next chunk
    assert Task.objects.get(pk=tasks["busy"]).cancel_requested
    # Cancelled themselves — not failed because a parent was cancelled first.
    for name in ("next", "last"):
        assert (nodes[name]["status"], nodes[name]["error"]["code"]) == ("cancelled", "cancelled")

    busy = Task.objects.select_related("tenant").get(pk=tasks["busy"])
    with capture(execute=True):
        services.finish_task(busy, state=TaskState.CANCELLED, output="", usage=None, error_code="cancelled",
                             error_message="cancelled by the tenant")
    assert cancelled.body["status"] == "running"
    assert acme_api.get(f"{WORKFLOWS}/{busy.workflow_id}").body["status"] == "cancelled"
