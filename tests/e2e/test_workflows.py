"""Workflows on the real platform (run_platform: server, scheduler, worker):
a chain runs in order with each node given its parent's output, and a failing
parent fails everything after it. SQLite and PostgreSQL + Redis, like the suite."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.harness import Platform, add_echo_model, wait_finished

pytestmark = pytest.mark.e2e

BROKEN_MODEL = "echo-broken"  # misconfigured by an operator: its tasks fail with model_unavailable


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with isolated_platform_env(tmp_path_factory.mktemp("workflows")) as env:
        running = Platform(env)
        try:
            running.wait_ready()
            seed = running.read_seed()
            # Paced, so a node started too early would still be mid-way when checked.
            add_echo_model(env, "echo-paced", 20)
            add_echo_model(env, BROKEN_MODEL, -1)
            running.api_key = seed["API_KEY"]
            yield running
        finally:
            running.stop()


@pytest.fixture
def client(platform):
    headers = {"Authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.base_url, headers=headers, timeout=10) as c:
        yield c


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _submit(client: httpx.Client, nodes: list[dict]) -> dict:
    response = client.post("/api/v1/workflows", json={"nodes": nodes})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_chain_runs_in_order_each_node_given_its_parents_output(client):
    created = _submit(client, [
        {"name": "a", "model": "echo-paced", "prompt": "alpha bravo charlie from a"},
        {"name": "b", "model": "echo-paced", "prompt": "b heard: {{a.output}}", "depends_on": ["a"]},
        {"name": "c", "model": "echo-paced", "prompt": "c heard: {{b.output}}", "depends_on": ["b"]},
    ])
    ids = created["tasks"]

    c = wait_finished(client, ids["c"])
    a = client.get(f"/api/v1/tasks/{ids['a']}").json()
    b = client.get(f"/api/v1/tasks/{ids['b']}").json()

    assert [t["status"] for t in (a, b, c)] == ["succeeded"] * 3, (a, b, c)
    assert _at(a["finished_at"]) <= _at(b["started_at"])
    assert _at(b["finished_at"]) <= _at(c["started_at"])
    assert b["output"] == "b heard: alpha bravo charlie from a"
    assert c["output"] == "c heard: b heard: alpha bravo charlie from a"

    shown = client.get(f"/api/v1/workflows/{created['id']}").json()
    assert shown["status"] == "succeeded"
    assert {name: node["depends_on"] for name, node in shown["tasks"].items()} == {"a": [], "b": ["a"], "c": ["b"]}


def test_a_failing_parent_fails_its_descendants_with_the_reason(client):
    created = _submit(client, [
        {"name": "bad", "model": BROKEN_MODEL, "prompt": "never runs"},
        {"name": "child", "model": "echo-paced", "prompt": "{{bad.output}}", "depends_on": ["bad"]},
        {"name": "grandchild", "model": "echo-paced", "prompt": "after {{child.output}}", "depends_on": ["child"]},
        {"name": "unrelated", "model": "echo-paced", "prompt": "still fine"},
    ])
    ids = created["tasks"]

    grandchild = wait_finished(client, ids["grandchild"])
    bad = wait_finished(client, ids["bad"])
    child = client.get(f"/api/v1/tasks/{ids['child']}").json()
    unrelated = wait_finished(client, ids["unrelated"])

    assert (bad["status"], bad["error"]["code"]) == ("failed", "model_unavailable")
    for task in (child, grandchild):
        assert task["status"] == "failed"
        reason = f"dependency {ids['bad']} failed (model_unavailable)"
        assert task["error"] == {"code": "dependency_failed", "message": reason}
        assert task["started_at"] is None  # never ran
    assert unrelated["status"] == "succeeded"

    assert client.get(f"/api/v1/workflows/{created['id']}").json()["status"] == "failed"
