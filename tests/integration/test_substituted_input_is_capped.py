"""A task's input with its parents' outputs in it is held to the size a
submitted prompt may have (200,000 characters a field). Over it, the task
fails with ``input_too_long`` when it would be released, before it runs or
reserves anything more, and what waits on it fails as on any failed parent.

The scenario of the report: with a budget of 1,000 tokens, node b was 6,000
references to node a's 800-character output — 72,000 characters submitted,
one "word" to count, 4.8 million characters once substituted — and ran with
all of them (2.4 million prompt tokens) while the ledger showed 802 spent.
"""

from __future__ import annotations

import pytest

from apps.tasks.graph import MAX_PROMPT_CHARS
from apps.tenants.services import change_tenant_plan
from tests.integration.graph_support import error_of, ledger, node, run, state, submit_workflow

pytestmark = pytest.mark.django_db

A_PROMPT = "w " * 400  # the echo model returns it whole (400 words, 800 characters) with max_tokens 400
A_OUTPUT_CHARS = len(A_PROMPT)
REFERENCE = "{{a.output}}"


def test_the_reported_workflow_fails_its_node_instead_of_running_it(
    acme, acme_api, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    change_tenant_plan(acme, {"budget_tokens": 1000})
    tasks = submit_workflow(
        acme_api,
        [
            node("a", A_PROMPT, max_tokens=400),
            node("b", REFERENCE * 6000, ["a"], max_tokens=1),
            node("c", "after {{b.output}}", ["b"], max_tokens=1),
        ],
        capture,
    )

    a = run(tasks["a"], capture)

    assert a.usage["total_tokens"] == 800
    status, error = error_of(acme_api, tasks["b"])
    assert status == "failed"
    assert error["code"] == "input_too_long"
    assert f"{6000 * A_OUTPUT_CHARS} characters" in error["message"] and "200000" in error["message"]
    assert error_of(acme_api, tasks["c"]) == (
        "failed", {"code": "dependency_failed", "message": f"dependency {tasks['b']} failed (input_too_long)"}
    )
    # Charged what a used, nothing for b or c: their reservations are released.
    assert ledger(acme_api) == (1000, 800, 0)


def test_an_input_of_exactly_the_limit_is_released_and_one_character_more_is_not(
    acme_api, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    references = MAX_PROMPT_CHARS // A_OUTPUT_CHARS
    assert references * A_OUTPUT_CHARS == MAX_PROMPT_CHARS
    over = "x" + REFERENCE * references
    # Each message's content is held to the limit, as a submitted one is.
    chat = {"name": "over_chat", "model": "echo", "messages": [{"role": "user", "content": over}], "depends_on": ["a"]}
    tasks = submit_workflow(
        acme_api,
        [
            node("a", A_PROMPT, max_tokens=400),
            node("fits", REFERENCE * references, ["a"], max_tokens=1),
            node("over", over, ["a"], max_tokens=1),
            {**chat, "max_tokens": 1},
        ],
        capture,
    )

    run(tasks["a"], capture)

    assert state(tasks["fits"]) == "queued"
    status, error = error_of(acme_api, tasks["over"])
    assert (status, error["code"]) == ("failed", "input_too_long")
    assert f"prompt would be {MAX_PROMPT_CHARS + 1} characters" in error["message"]
    status, error = error_of(acme_api, tasks["over_chat"])
    assert (status, error["code"]) == ("failed", "input_too_long")
    assert f"messages.0.content would be {MAX_PROMPT_CHARS + 1} characters" in error["message"]
