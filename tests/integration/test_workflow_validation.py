"""A workflow or a task with depends_on that cannot run is refused with a 400
naming the node and field at fault — and nothing of it is written."""

from __future__ import annotations

import uuid

import pytest

from apps.tasks.models import Task, TaskDependency, Workflow
from tests.integration.graph_support import TASKS, WORKFLOWS, assert_invalid, node, submit_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def nothing_written():
    """Asserts, after the test, that no task, link or workflow was left behind."""
    before = (Task.objects.count(), TaskDependency.objects.count(), Workflow.objects.count())
    yield
    assert (Task.objects.count(), TaskDependency.objects.count(), Workflow.objects.count()) == before


def test_a_cycle_is_refused_naming_its_nodes(acme_api, nothing_written):
    nodes = [
        node("start"), node("a", depends_on=["start", "c"]), node("b", depends_on=["a"]), node("c", depends_on=["b"])
    ]
    error = assert_invalid(acme_api.post(WORKFLOWS, {"nodes": nodes}), "nodes.1.depends_on", "workflow_cycle")
    assert "a -> c -> b -> a" in error["message"]


def test_a_node_depending_on_itself_is_a_cycle(acme_api, nothing_written):
    response = acme_api.post(WORKFLOWS, {"nodes": [node("a", depends_on=["a"])]})
    assert "a -> a" in assert_invalid(response, "nodes.0.depends_on", "workflow_cycle")["message"]


def test_an_unknown_parent_name_is_refused_naming_it(acme_api, nothing_written):
    nodes = [node("a"), node("b", depends_on=["a"]), node("c", depends_on=["a", "nope"])]
    error = assert_invalid(acme_api.post(WORKFLOWS, {"nodes": nodes}), "nodes.2.depends_on", "unknown_node")
    assert "'nope'" in error["message"]


def test_duplicate_names_are_refused(acme_api, nothing_written):
    nodes = [node("a"), node("b"), node("a")]
    error = assert_invalid(acme_api.post(WORKFLOWS, {"nodes": nodes}), "nodes.2.name", "duplicate_name")
    assert "nodes.0" in error["message"]


@pytest.mark.parametrize(
    "name, code",
    [("", "blank"), ("has space", "invalid"), ("dot.ted", "invalid"), ("x" * 65, "invalid"), ("{{a}}", "invalid")],
)
def test_bad_names_are_refused(acme_api, nothing_written, name, code):
    assert_invalid(acme_api.post(WORKFLOWS, {"nodes": [node(name)]}), "nodes.0.name", code)


def test_a_reference_to_a_node_that_is_not_a_parent_is_refused(acme_api, nothing_written):
    # "a" exists in the workflow, but "c" does not depend on it.
    nodes = [node("a"), node("b", depends_on=["a"]), node("c", "{{b.output}} and {{a.output}}", depends_on=["b"])]
    error = assert_invalid(acme_api.post(WORKFLOWS, {"nodes": nodes}), "nodes.2.prompt", "unknown_reference")
    assert "{{a.output}}" in error["message"]


def test_a_reference_in_a_message_is_checked_too(acme_api, nothing_written):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "{{ghost.output}}"}]
    nodes = [node("a"), {"name": "b", "model": "echo", "messages": messages, "depends_on": ["a"]}]
    response = acme_api.post(WORKFLOWS, {"nodes": nodes})
    assert_invalid(response, "nodes.1.messages.1.content", "unknown_reference")


def test_a_reference_in_a_root_node_is_refused(acme_api, nothing_written):
    nodes = [node("a", "{{b.output}}"), node("b")]
    assert_invalid(acme_api.post(WORKFLOWS, {"nodes": nodes}), "nodes.0.prompt", "unknown_reference")


def test_each_node_is_validated_like_a_task(acme_api, nothing_written):
    no_tokens = [node("a"), node("b", max_tokens=0)]
    assert_invalid(acme_api.post(WORKFLOWS, {"nodes": no_tokens}), "nodes.1.max_tokens", "min_value")
    assert_invalid(acme_api.post(WORKFLOWS, {"nodes": [node("a", tempo=1)]}), "nodes.0.tempo", "unknown_field")
    both = node("a", messages=[{"role": "user", "content": "hi"}])
    assert_invalid(acme_api.post(WORKFLOWS, {"nodes": [both]}), "nodes.0.prompt", "prompt_or_messages")


def test_an_unknown_model_in_a_later_node_leaves_no_earlier_node_behind(acme_api, nothing_written):
    nodes = [node("a"), node("b", depends_on=["a"]), node("c", depends_on=["b"], model="no-such-model")]
    error = assert_invalid(acme_api.post(WORKFLOWS, {"nodes": nodes}), "nodes.2.model", "model_not_found")
    assert "'c'" in error["message"]


def test_at_most_a_hundred_nodes_and_at_least_one(acme_api, nothing_written):
    assert_invalid(acme_api.post(WORKFLOWS, {"nodes": [node(f"n{i}") for i in range(101)]}), "nodes", "max_length")
    assert_invalid(acme_api.post(WORKFLOWS, {"nodes": []}), "nodes", "min_length")
    assert_invalid(acme_api.post(WORKFLOWS, {}), "nodes", "required")
    assert_invalid(acme_api.post(WORKFLOWS, {"nodes": [node("a")], "extra": 1}), "extra", "unknown_field")


def test_a_hundred_node_chain_is_accepted(acme_api, django_capture_on_commit_callbacks):
    nodes = [node(f"n{i}", depends_on=[f"n{i - 1}"] if i else []) for i in range(100)]
    with django_capture_on_commit_callbacks(execute=False):
        created = acme_api.post(WORKFLOWS, {"nodes": nodes})
    assert created.status == 201, created.body
    ranks = dict(Task.objects.filter(workflow_id=created.body["id"]).values_list("id", "critical_path_rank"))
    assert [ranks[uuid.UUID(created.body["tasks"][f"n{i}"])] for i in range(100)] == list(range(99, -1, -1))


# --- depends_on on POST /api/v1/tasks ------------------------------------------------------------


def test_another_tenants_task_is_refused_like_a_missing_one(acme_api, globex_api, django_capture_on_commit_callbacks):
    theirs = submit_task(globex_api, django_capture_on_commit_callbacks)["id"]
    before = Task.objects.count()
    foreign = assert_invalid(acme_api.post(TASKS, {"model": "echo", "prompt": "x", "depends_on": [theirs]}),
                             "depends_on", "parent_not_found")
    missing_id = str(uuid.uuid4())
    missing = assert_invalid(acme_api.post(TASKS, {"model": "echo", "prompt": "x", "depends_on": [missing_id]}),
                             "depends_on", "parent_not_found")
    assert foreign["message"].replace(theirs, "ID") == missing["message"].replace(missing_id, "ID")
    assert Task.objects.count() == before


def test_depends_on_must_be_task_ids(acme_api, nothing_written):
    task = {"model": "echo", "prompt": "x"}
    assert_invalid(acme_api.post(TASKS, {**task, "depends_on": ["a"]}), "depends_on.0", "invalid")
    assert_invalid(acme_api.post(TASKS, {**task, "depends_on": "a"}), "depends_on", "not_a_list")


def test_a_task_reference_must_name_a_task_in_depends_on(acme_api, django_capture_on_commit_callbacks):
    parent = submit_task(acme_api, django_capture_on_commit_callbacks)["id"]
    other = str(uuid.uuid4())
    response = acme_api.post(TASKS, {"model": "echo", "prompt": f"{{{{{other}.output}}}}", "depends_on": [parent]})
    assert other in assert_invalid(response, "prompt", "unknown_reference")["message"]


def test_without_depends_on_reference_syntax_is_plain_text(acme_api):
    created = acme_api.post(TASKS, {"model": "echo", "prompt": "explain {{a.output}} to me"})
    assert created.status == 201, created.body
    assert created.body["status"] == "queued"
    assert created.body["input"] == {"prompt": "explain {{a.output}} to me"}
