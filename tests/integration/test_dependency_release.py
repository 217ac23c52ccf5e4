"""A task waits for its parents and is released — queued and dispatched —
exactly once, when the last of them has succeeded."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from django.db import connection

from apps.runtime.execution import execute_task
from apps.tasks import dependencies, payloads, services
from apps.tasks.models import Task, TaskState
from tests.integration.graph_support import node, ready, run, state, submit_task, submit_workflow

pytestmark = pytest.mark.django_db


def test_a_child_waits_then_is_released_once_its_parent_succeeded(acme_api, django_capture_on_commit_callbacks):
    tasks = submit_workflow(acme_api, [node("a", "alpha beta"), node("b", "a said: {{a.output}}", ["a"])],
                            django_capture_on_commit_callbacks)
    assert state(tasks["b"]) == TaskState.WAITING
    assert ready() == {tasks["a"]}  # the waiting child is not for the dispatcher yet
    assert acme_api.get(f"/api/v1/tasks/{tasks['b']}").body["input"] == {"prompt": "a said: {{a.output}}"}

    run(tasks["a"], django_capture_on_commit_callbacks)

    child = Task.objects.get(pk=tasks["b"])
    assert child.state == TaskState.QUEUED and child.queued_at is not None
    assert ready() == {tasks["b"]}
    # Released with its reference resolved: GET shows what the model is given.
    assert acme_api.get(f"/api/v1/tasks/{tasks['b']}").body["input"] == {"prompt": "a said: alpha beta"}
    assert run(tasks["b"], django_capture_on_commit_callbacks).state == TaskState.SUCCEEDED
    assert payloads.read_output(Task.objects.get(pk=tasks["b"])) == "a said: alpha beta"


def test_two_parents_finishing_together_release_the_child_exactly_once(acme_api, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    p2 = submit_task(acme_api, capture, prompt="TWO")["id"]
    # p1's output holds a reference to p2 (plain text: p1 has no depends_on).
    # Released once, the child's input keeps it verbatim; a second release
    # would substitute again and turn it into "TWO".
    p1 = submit_task(acme_api, capture, prompt=f"{{{{{p2}.output}}}}")["id"]
    child = submit_task(acme_api, capture, prompt=f"{{{{{p1}.output}}}}", depends_on=[p1, p2])["id"]
    # Both parents end before either's commit hook runs: both hooks see two
    # succeeded parents, the case where a careless release happens twice.
    with capture(execute=False) as hooks:
        execute_task(uuid.UUID(p1))
        execute_task(uuid.UUID(p2))
    assert state(child) == TaskState.WAITING
    with capture(execute=True):
        for hook in hooks:
            hook()
    released_at = Task.objects.get(pk=child).queued_at
    with capture(execute=True):
        dependencies.task_ended(uuid.UUID(p1))  # and once more, late
        dependencies.task_ended(uuid.UUID(p2))

    task = Task.objects.select_related("tenant").get(pk=child)
    assert (task.state, task.queued_at) == (TaskState.QUEUED, released_at)
    assert payloads.read_input(task)["prompt"] == f"{{{{{p2}.output}}}}"
    assert run(child, capture).state == TaskState.SUCCEEDED
    assert payloads.read_output(Task.objects.get(pk=child)) == f"{{{{{p2}.output}}}}"


def test_a_child_stays_waiting_until_its_last_parent_succeeded(acme_api, django_capture_on_commit_callbacks):
    tasks = submit_workflow(
        acme_api, [node("p1"), node("p2"), node("child", depends_on=["p1", "p2"])], django_capture_on_commit_callbacks
    )
    run(tasks["p1"], django_capture_on_commit_callbacks)
    assert state(tasks["child"]) == TaskState.WAITING
    assert ready() == {tasks["p2"]}
    run(tasks["p2"], django_capture_on_commit_callbacks)
    assert state(tasks["child"]) == TaskState.QUEUED
    assert ready() == {tasks["child"]}


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL"),
    # SQLite runs one writer at a time (and the in-memory test database's shared
    # cache answers "table is locked" rather than waiting): nothing to race there.
    reason="concurrent writers need PostgreSQL",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_parents_finishing_in_two_threads_release_the_child_once(acme_api):
    """Real commits in two threads at once (each hook runs after its own commit)."""
    created = acme_api.post("/api/v1/workflows", {"nodes": [
        node("p1", "one"), node("p2", "two"), node("child", "{{p1.output}} {{p2.output}}", ["p1", "p2"]),
    ]})
    assert created.status == 201, created.body
    tasks = created.body["tasks"]
    claimed = [services.claim_task(uuid.UUID(tasks[name]), f"worker-{name}") for name in ("p1", "p2")]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def finish(task: Task, output: str) -> None:
        try:
            start.wait()
            services.finish_task(task, state=TaskState.SUCCEEDED, output=output, usage=None)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=finish, args=pair) for pair in zip(claimed, ("one", "two"), strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors

    assert ready() == {tasks["child"]}
    child = Task.objects.select_related("tenant").get(pk=tasks["child"])
    assert child.state == TaskState.QUEUED
    assert payloads.read_input(child)["prompt"] == "one two"


def test_a_task_whose_parents_already_succeeded_is_queued_at_once(acme_api, django_capture_on_commit_callbacks):
    parent = submit_task(acme_api, django_capture_on_commit_callbacks, prompt="done already")["id"]
    run(parent, django_capture_on_commit_callbacks)

    child = submit_task(acme_api, django_capture_on_commit_callbacks, prompt=f"got {{{{{parent}.output}}}}",
                        depends_on=[parent])

    assert child["status"] == "queued"
    assert child["depends_on"] == [parent]
    assert child["input"] == {"prompt": "got done already"}
    assert ready() == {child["id"]}


def test_a_single_task_can_wait_on_a_running_one(acme_api, django_capture_on_commit_callbacks):
    parent = submit_task(acme_api, django_capture_on_commit_callbacks, prompt="slowly")["id"]
    services.claim_task(uuid.UUID(parent), "worker-a")  # running now
    child = submit_task(acme_api, django_capture_on_commit_callbacks, prompt=f"{{{{{parent}.output}}}}!",
                        depends_on=[parent])
    assert child["status"] == "waiting"

    running = Task.objects.select_related("tenant").get(pk=parent)
    with django_capture_on_commit_callbacks(execute=True):
        services.finish_task(running, state=TaskState.SUCCEEDED, output="slowly", usage=None)

    assert ready() == {child["id"]}
    assert acme_api.get(f"/api/v1/tasks/{child['id']}").body["input"] == {"prompt": "slowly!"}


def test_a_release_lost_with_a_crashed_process_is_made_by_the_sweep(acme_api, django_capture_on_commit_callbacks):
    tasks = submit_workflow(acme_api, [node("a"), node("b", depends_on=["a"])], django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):  # its hooks never run: the process died
        execute_task(uuid.UUID(tasks["a"]))
    assert state(tasks["a"]) == TaskState.SUCCEEDED and state(tasks["b"]) == TaskState.WAITING

    with django_capture_on_commit_callbacks(execute=True):
        assert dependencies.settle_stranded() == 1

    assert state(tasks["b"]) == TaskState.QUEUED
    assert ready() == {tasks["b"]}
    with django_capture_on_commit_callbacks(execute=True):
        assert dependencies.settle_stranded() == 0
