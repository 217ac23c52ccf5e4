"""``{{KEY.output}}`` is replaced by the parent's output literally, once: an
output that looks like a reference or like template code arrives verbatim."""

from __future__ import annotations

import pytest

from apps.tasks import payloads
from apps.tasks.models import Task
from tests.integration.graph_support import node, run, submit_task, submit_workflow

pytestmark = pytest.mark.django_db

# Django and Jinja syntax, regex replacement escapes, shell syntax: none of it may do anything.
TEMPLATE_LOOKALIKES = "{% debug %} {{ settings.SECRET_KEY }} {{ 7*7 }} {# c #} \\1 \\g<0> ${HOME} $1"


def _output(task_id: str) -> str:
    return payloads.read_output(Task.objects.select_related("tenant").get(pk=task_id))


def test_an_output_holding_a_reference_is_not_expanded_again(acme_api, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    first = submit_task(acme_api, capture, prompt="FIRST")["id"]
    # Without depends_on this is plain text: the echo model returns it as written.
    second = submit_task(acme_api, capture, prompt=f"{{{{{first}.output}}}}")["id"]
    run(first, capture)
    run(second, capture)
    assert _output(second) == f"{{{{{first}.output}}}}"

    # The child depends on both, so {{first.output}} would resolve — if the
    # text that came from second's output were scanned again.
    child = submit_task(acme_api, capture, prompt=f"<{{{{{second}.output}}}}>", depends_on=[first, second])
    assert child["input"] == {"prompt": f"<{{{{{first}.output}}}}>"}
    run(child["id"], capture)
    assert _output(child["id"]) == f"<{{{{{first}.output}}}}>"


def test_template_lookalikes_pass_through_a_workflow_verbatim(acme_api, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    tasks = submit_workflow(
        acme_api,
        [
            node("a", TEMPLATE_LOOKALIKES),
            node("b", "b saw [{{a.output}}] twice: [{{ a.output }}]", ["a"]),
            node("c", "{{b.output}}", ["b"], max_tokens=1000),
        ],
        capture,
    )
    for name in ("a", "b", "c"):
        run(tasks[name], capture)

    expected = f"b saw [{TEMPLATE_LOOKALIKES}] twice: [{TEMPLATE_LOOKALIKES}]"
    assert _output(tasks["b"]) == expected
    assert _output(tasks["c"]) == expected


def test_references_in_messages_are_substituted_and_nothing_else_is(acme_api, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    messages = [
        {"role": "system", "content": "context: {{a.output}}"},
        {"role": "user", "content": "summarise {{a.output}}", "name": "a"},
    ]
    tasks = submit_workflow(
        acme_api,
        [node("a", "the facts"), {"name": "b", "model": "echo", "messages": messages, "stop": ["{{a.output}}"],
                                  "depends_on": ["a"]}],
        capture,
    )
    run(tasks["a"], capture)
    shown = acme_api.get(f"/api/v1/tasks/{tasks['b']}").body
    assert shown["input"]["messages"] == [
        {"role": "system", "content": "context: the facts"},
        {"role": "user", "content": "summarise the facts", "name": "a"},
    ]
    assert shown["params"]["stop"] == ["{{a.output}}"]  # only prompt and message contents are templates
    run(tasks["b"], capture)
    assert _output(tasks["b"]) == "summarise the facts"


def test_a_task_outside_a_workflow_names_a_node_by_its_task_id(acme_api, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    tasks = submit_workflow(acme_api, [node("a", "by name"), node("b", "{{a.output}}", ["a"])], capture)
    run(tasks["a"], capture)
    run(tasks["b"], capture)
    # A single task outside the workflow depends on a node by its id.
    outside = submit_task(acme_api, capture, prompt=f"{{{{{tasks['b']}.output}}}} and more", depends_on=[tasks["b"]])
    assert outside["input"] == {"prompt": "by name and more"}
