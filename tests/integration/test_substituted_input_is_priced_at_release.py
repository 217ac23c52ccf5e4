"""A task whose input takes its parents' outputs is priced when it is
released, by that input: admission could only count ``{{KEY.output}}`` as
written. Its reservation becomes the real worst case (prompt + max_tokens)
in the releasing transaction; when that does not fit in the budget, the task
fails with ``budget_exceeded`` instead of running, and what waits on it fails
as on any failed parent. The ledger never passes the budget.
"""

from __future__ import annotations

import pytest

from apps.tenants.services import change_tenant_plan
from tests.integration.graph_support import error_of, ledger, node, run, state, submit_workflow

pytestmark = pytest.mark.django_db

BUDGET = 1000
REFERENCE = "{{a.output}}"  # the echo model counts it as one word, as admission does


def test_a_node_over_the_budget_once_substituted_fails_budget_exceeded(
    acme, acme_api, django_capture_on_commit_callbacks
):
    # The report's workflow, at a size under the prompt limit: 200 references to
    # a's 400-word output are 160,000 characters, 80,000 words, once substituted.
    capture = django_capture_on_commit_callbacks
    change_tenant_plan(acme, {"budget_tokens": BUDGET})
    tasks = submit_workflow(
        acme_api,
        [
            node("a", "w " * 400, max_tokens=400),
            node("b", REFERENCE * 200, ["a"], max_tokens=1),
            node("c", "after {{b.output}}", ["b"], max_tokens=1),
        ],
        capture,
    )
    # Admitted as written: a 400 + 400, b 1 + 1, c 2 + 1.
    assert ledger(acme_api) == (BUDGET, 0, 805)

    run(tasks["a"], capture)

    status, error = error_of(acme_api, tasks["b"])
    assert status == "failed"
    assert error["code"] == "budget_exceeded"
    assert "80001 tokens" in error["message"]
    assert error_of(acme_api, tasks["c"]) == (
        "failed", {"code": "dependency_failed", "message": f"dependency {tasks['b']} failed (budget_exceeded)"}
    )
    budget, spent, reserved = ledger(acme_api)
    assert (spent, reserved) == (800, 0)  # a's usage; b and c never ran, their reservations are released
    assert spent + reserved <= budget


def test_a_node_within_the_budget_is_reserved_and_charged_for_its_substituted_prompt(
    acme, acme_api, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    change_tenant_plan(acme, {"budget_tokens": BUDGET})
    tasks = submit_workflow(
        acme_api,
        [node("a", "w " * 10, max_tokens=10), node("b", REFERENCE * 3 + "end", ["a"], max_tokens=50)],
        capture,
    )
    assert ledger(acme_api) == (BUDGET, 0, 20 + 1 + 50)

    run(tasks["a"], capture)

    # Released with 31 words (three outputs of ten, then "end"): reserved 31 + 50.
    assert state(tasks["b"]) == "queued"
    assert ledger(acme_api) == (BUDGET, 20, 31 + 50)

    b = run(tasks["b"], capture)

    assert b.usage == {"prompt_tokens": 31, "completion_tokens": 31, "total_tokens": 62}
    assert ledger(acme_api) == (BUDGET, 20 + 62, 0)
