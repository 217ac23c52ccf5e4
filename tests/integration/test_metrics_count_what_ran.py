"""GET /metrics after a known set of tasks: the counters and histogram totals are what ran.

Tasks run on the worker's own code path (apps.runtime.execution.execute_task)
with their commit hooks, as in production. The series are process-wide (the
test process keeps its own values: no PROMETHEUS_MULTIPROC_DIR), so each test
compares two scrapes, before and after.
"""

from __future__ import annotations

import pytest

from apps.tasks import services
from apps.tasks.models import Task, TaskState
from apps.tenants.services import change_tenant_plan, pause_tenant
from tests.integration.graph_support import run, submit_task
from tests.metrics_support import delta, scrape

pytestmark = pytest.mark.django_db

ECHO = {"model": "echo"}


def _seconds(pairs) -> float:
    return sum((end - start).total_seconds() for start, end in pairs)


def test_counts_and_histogram_totals_equal_what_ran(acme_api, globex_api, staff_client,
                                                    django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    before = scrape(staff_client)

    ran = [
        submit_task(acme_api, capture, prompt="the quick brown fox")["id"],
        submit_task(acme_api, capture, prompt="one two")["id"],
        submit_task(globex_api, capture, prompt="a b c d e f")["id"],
    ]
    never_ran = submit_task(acme_api, capture, prompt="cancelled before it started")["id"]
    with capture(execute=True):
        services.cancel_task(Task.objects.get(pk=never_ran))
    for task_id in ran:
        run(task_id, capture)

    after = scrape(staff_client)
    tasks = list(Task.objects.filter(pk__in=ran).select_related("tenant"))
    assert {task.state for task in tasks} == {TaskState.SUCCEEDED}

    def by(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    assert by("llmagentos_tasks_submitted_total", **ECHO, tenant="acme") == 3
    assert by("llmagentos_tasks_submitted_total", **ECHO, tenant="globex") == 1
    assert by("llmagentos_tasks_finished_total", **ECHO, tenant="acme", outcome="succeeded") == 2
    assert by("llmagentos_tasks_finished_total", **ECHO, tenant="acme", outcome="cancelled") == 1
    assert by("llmagentos_tasks_finished_total", **ECHO, tenant="globex", outcome="succeeded") == 1
    assert by("llmagentos_tasks_finished_total", **ECHO, tenant="globex", outcome="cancelled") == 0
    for slug in ("acme", "globex"):
        mine = [task for task in tasks if task.tenant.slug == slug]
        assert by("llmagentos_tokens_in_total", **ECHO, tenant=slug) == sum(t.prompt_tokens for t in mine) > 0
        assert by("llmagentos_tokens_out_total", **ECHO, tenant=slug) == sum(t.completion_tokens for t in mine) > 0

    # Histograms: one observation per task that ran (the cancelled one never did),
    # totalling the times the database recorded for them.
    expected = {
        "llmagentos_queue_wait_seconds": _seconds((t.queued_at, t.started_at) for t in tasks),
        "llmagentos_time_to_first_token_seconds": _seconds((t.queued_at, t.first_token_at) for t in tasks),
        "llmagentos_task_duration_seconds": _seconds((t.created_at, t.finished_at) for t in tasks),
    }
    for histogram, total in expected.items():
        assert by(f"{histogram}_count", **ECHO) == 3, histogram
        assert by(f"{histogram}_bucket", **ECHO, le="+Inf") == 3, histogram
        assert by(f"{histogram}_sum", **ECHO) == pytest.approx(total, abs=1e-6), histogram


def test_refused_admissions_are_counted_by_reason(acme, acme_api, staff_client, django_capture_on_commit_callbacks):
    change_tenant_plan(acme, {"budget_tokens": 10, "max_queued": 1})
    before = scrape(staff_client)

    submit_task(acme_api, django_capture_on_commit_callbacks, prompt="one", max_tokens=4)
    assert acme_api.post("/api/v1/tasks", {**ECHO, "prompt": "two", "max_tokens": 4}).status == 429  # queue_full
    Task.objects.filter(tenant=acme).update(state=TaskState.CANCELLED)  # the queue has room again
    assert acme_api.post("/api/v1/tasks", {**ECHO, "prompt": "three", "max_tokens": 100}).status == 402
    pause_tenant(acme)
    assert acme_api.post("/api/v1/tasks", {**ECHO, "prompt": "four", "max_tokens": 4}).status == 403

    after = scrape(staff_client)
    assert delta(before, after, "llmagentos_admission_rejections_total", reason="queue_full") == 1
    assert delta(before, after, "llmagentos_admission_rejections_total", reason="budget_exceeded") == 1
    assert delta(before, after, "llmagentos_admission_rejections_total", reason="tenant_paused") == 1
    assert delta(before, after, "llmagentos_tasks_submitted_total", **ECHO, tenant="acme") == 1


def test_http_requests_are_counted_by_route_and_status(acme_api, staff_client):
    before = scrape(staff_client)

    assert acme_api.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000").status == 404
    assert acme_api.get("/api/v1/tasks/00000000-0000-0000-0000-000000000001").status == 404
    assert acme_api.get("/api/v1/no-such-route").status == 404

    after = scrape(staff_client)
    route = "api/v1/tasks/<id:pk>"  # the pattern: every task id counts under it
    assert delta(before, after, "llmagentos_http_requests_total", route=route, method="GET", status="404") == 2
    assert delta(before, after, "llmagentos_http_requests_total", route="unmatched", method="GET", status="404") == 1
    # The first scrape was answered, and counted, before the second one was written.
    assert delta(before, after, "llmagentos_http_requests_total", route="metrics", method="GET", status="200") == 1
