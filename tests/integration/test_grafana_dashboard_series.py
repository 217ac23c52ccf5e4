"""deploy/grafana/llmagentos.json queries only series that GET /metrics writes.

A platform with something in every series (a task run, a refusal, a worker
with a GPU, a budgeted tenant) is scraped; each llmagentos_* name the
dashboard's JSON mentions (panel queries, the model variable) must be a
sample name in that output: a renamed series fails here, not on an
operator's empty panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from apps.tenants.services import change_tenant_plan
from apps.workers.services import heartbeat, register_worker
from tests.integration.graph_support import run, submit_task
from tests.metrics_support import scrape

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "llmagentos.json"
SERIES = re.compile(r"\bllmagentos_[a-z0-9_]+\b")
GPU = {"index": 0, "memory_total": 80_000, "memory_free": 30_000, "utilization": 55}


def _queried_series() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"], "the dashboard has no panels"
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    assert exprs
    return set(SERIES.findall(json.dumps(dashboard)))


@pytest.mark.django_db
def test_every_series_the_dashboard_queries_is_in_metrics(acme, acme_api, staff_client,
                                                          django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    worker = register_worker(name="gpu-worker", host="h", pid=1, slots=2, device_info={})
    heartbeat(worker.pk, in_flight=1, idle=False, device_info={"gpus": [GPU]})
    change_tenant_plan(acme, {"budget_tokens": 100})
    run(submit_task(acme_api, capture, prompt="hello there", max_tokens=8)["id"], capture)
    assert acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "x", "max_tokens": 500}).status == 402

    written = scrape(staff_client).names()

    queried = _queried_series()
    assert len(queried) >= 20
    assert queried - written == set()
