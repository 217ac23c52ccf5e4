"""A parent that fails or is cancelled fails every task waiting on it, however
far down, with ``dependency_failed`` and a message naming that parent."""

from __future__ import annotations

import uuid

import pytest

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.tasks import dependencies, services
from apps.tasks.models import Task, TaskState
from tests.integration.graph_support import WORKFLOWS, node, ready, run, state, submit_task, submit_workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def broken_model(db) -> str:
    """An echo model an operator misconfigured: its tasks fail with model_unavailable."""
    LLMModel.objects.create(name="echo-broken", adapter="echo", is_public=True, adapter_config={"words_per_second": -1})
    return "echo-broken"


def test_a_failure_fails_every_waiting_descendant_and_nothing_else(
    acme_api, broken_model, django_capture_on_commit_callbacks
):
    # a → b → c, a → d; e waits on d and on an unrelated root x.
    nodes = [
        node("a", model=broken_model), node("b", depends_on=["a"]), node("c", "{{b.output}}", ["b"]),
        node("d", depends_on=["a"]), node("x"), node("e", depends_on=["d", "x"]),
    ]
    tasks = submit_workflow(acme_api, nodes, django_capture_on_commit_callbacks)

    failed = run(tasks["a"], django_capture_on_commit_callbacks)

    assert (failed.state, failed.error_code) == (TaskState.FAILED, "model_unavailable")
    for name in ("b", "c", "d", "e"):
        task = Task.objects.get(pk=tasks[name])
        assert (task.state, task.error_code) == (TaskState.FAILED, "dependency_failed"), name
        assert task.error_message == f"dependency {tasks['a']} failed (model_unavailable)"
        assert task.finished_at is not None and task.started_at is None
    assert ready() == {tasks["x"]}

    shown = acme_api.get(f"{WORKFLOWS}/{failed.workflow_id}").body
    assert shown["status"] == "running"  # x has yet to run
    reason = f"dependency {tasks['a']} failed (model_unavailable)"
    assert shown["tasks"]["c"]["error"] == {"code": "dependency_failed", "message": reason}
    run(tasks["x"], django_capture_on_commit_callbacks)
    assert acme_api.get(f"{WORKFLOWS}/{failed.workflow_id}").body["status"] == "failed"


def test_a_cancelled_parent_fails_its_descendants_naming_the_cancel(acme_api, django_capture_on_commit_callbacks):
    tasks = submit_workflow(acme_api, [node("a"), node("b", depends_on=["a"]), node("c", depends_on=["b"])],
                            django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = acme_api.post(f"/api/v1/tasks/{tasks['a']}/cancel")
    assert cancelled.body["status"] == "cancelled"
    for name in ("b", "c"):
        task = Task.objects.get(pk=tasks[name])
        assert (task.state, task.error_code, task.error_message) == (
            TaskState.FAILED, "dependency_failed", f"dependency {tasks['a']} was cancelled",
        )


def test_a_cancelled_waiting_task_fails_only_what_waits_on_it(acme_api, django_capture_on_commit_callbacks):
    tasks = submit_workflow(
        acme_api, [node("a"), node("b", depends_on=["a"]), node("c", depends_on=["b"]), node("d", depends_on=["a"])],
        django_capture_on_commit_callbacks,
    )
    with django_capture_on_commit_callbacks(execute=True):
        acme_api.post(f"/api/v1/tasks/{tasks['b']}/cancel")
    assert state(tasks["b"]) == TaskState.CANCELLED
    assert Task.objects.get(pk=tasks["c"]).error_message == f"dependency {tasks['b']} was cancelled"

    run(tasks["a"], django_capture_on_commit_callbacks)

    assert state(tasks["b"]) == TaskState.CANCELLED  # not revived by its parent's success
    assert ready() == {tasks["d"]}


def test_a_task_submitted_after_its_parent_failed_is_created_failed(
    acme_api, broken_model, django_capture_on_commit_callbacks
):
    parent = submit_task(acme_api, django_capture_on_commit_callbacks, model=broken_model)["id"]
    run(parent, django_capture_on_commit_callbacks)

    child = submit_task(acme_api, django_capture_on_commit_callbacks, depends_on=[parent])

    assert child["status"] == "failed"
    assert child["error"] == {"code": "dependency_failed", "message": f"dependency {parent} failed (model_unavailable)"}
    assert child["started_at"] is None and child["finished_at"] is not None
    assert ready() == set()


def test_a_lease_lost_on_the_last_attempt_fails_the_children_too(
    acme_api, django_capture_on_commit_callbacks, settings
):
    tasks = submit_workflow(acme_api, [node("a"), node("b", depends_on=["a"])], django_capture_on_commit_callbacks)
    settings.TASK_MAX_ATTEMPTS = 1
    claimed = services.claim_task(uuid.UUID(tasks["a"]), "worker-that-dies")
    Task.objects.filter(pk=claimed.pk).update(lease_expires_at=claimed.started_at)  # long expired

    with django_capture_on_commit_callbacks(execute=True):
        services.reap_expired_leases()

    assert state(tasks["a"]) == TaskState.FAILED
    assert Task.objects.get(pk=tasks["b"]).error_message == f"dependency {tasks['a']} failed (worker_lost)"


def test_a_referenced_output_erased_before_the_release_fails_the_child(acme_api, django_capture_on_commit_callbacks):
    tasks = submit_workflow(
        acme_api, [node("a", "secret"), node("uses", "{{a.output}}", ["a"]), node("ignores", "plain", ["a"])],
        django_capture_on_commit_callbacks,
    )
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        execute_task(uuid.UUID(tasks["a"]))
    acme_api.delete(f"/api/v1/tasks/{tasks['a']}")  # the tenant erases it before the release ran
    with django_capture_on_commit_callbacks(execute=True):
        for hook in hooks:
            hook()

    uses = Task.objects.get(pk=tasks["uses"])
    assert (uses.state, uses.error_code) == (TaskState.FAILED, "dependency_failed")
    assert uses.error_message == f"the output of dependency {tasks['a']} was erased before this task ran"
    assert state(tasks["ignores"]) == TaskState.QUEUED


def test_failing_a_long_chain_reaches_its_end(acme_api, broken_model, django_capture_on_commit_callbacks):
    nodes = [node("n0", model=broken_model)] + [node(f"n{i}", depends_on=[f"n{i - 1}"]) for i in range(1, 60)]
    tasks = submit_workflow(acme_api, nodes, django_capture_on_commit_callbacks)
    run(tasks["n0"], django_capture_on_commit_callbacks)
    assert set(Task.objects.filter(pk__in=list(tasks.values())[1:]).values_list("error_code", flat=True)) == {
        dependencies.DEPENDENCY_FAILED
    }
