"""Fair share on the real stack: a tenant flooding 500 tasks and a quiet tenant
submitting 20 afterwards, on one worker: the quiet tenant's tasks all finish
before the flood does — asserted by the order of completion, not by time.

Both tenants submit while the operator has the worker drained, so the whole
backlog is waiting when the worker comes back: what follows is the policy's
order alone, whatever the speed of this machine.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.harness import Platform, manage

pytestmark = [
    pytest.mark.e2e,
    # The proof is on the real stack; the policy is the same code in
    # embedded mode, where tests/integration/test_dispatcher.py covers it.
    pytest.mark.skipif(not os.environ.get("DATABASE_URL"), reason="runs on PostgreSQL + Redis (the distributed suite)"),
]

FLOOD, QUIET = 500, 20

_EACH_WORKER = "from apps.workers.models import Worker; from apps.workers import services; "


def _workers(env) -> int:
    return int(manage(env, "shell", "--no-imports", "-v", "0", "-c", _EACH_WORKER + "print(Worker.objects.count())"))


def _operator(env, action: str) -> None:
    code = _EACH_WORKER + f"[services.{action}(w) for w in Worker.objects.all()]"
    manage(env, "shell", "--no-imports", "-v", "0", "-c", code)


def _submit_all(client: httpx.Client, key: str, count: int, label: str) -> list[str]:
    ids = []
    for i in range(count):
        response = client.post(
            "/api/v1/tasks",
            json={"model": "echo", "prompt": f"{label} {i}", "max_tokens": 8},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _finish_times(client: httpx.Client, key: str, deadline: float) -> dict[str, str]:
    """finished_at of each of the tenant's tasks, once none is queued or running."""
    headers = {"Authorization": f"Bearer {key}"}
    while any(
        client.get("/api/v1/tasks", params={"status": status, "page_size": 1}, headers=headers).json()["results"]
        for status in ("queued", "running")
    ):
        assert time.monotonic() < deadline, "the tasks did not finish"
        time.sleep(1)
    times: dict[str, str] = {}
    url: str | None = "/api/v1/tasks?page_size=200"
    while url:
        page = client.get(url, headers=headers).json()
        for task in page["results"]:
            assert task["status"] == "succeeded", task
            times[task["id"]] = task["finished_at"]
        url = page["next"]
    return times


def test_a_quiet_tenant_is_not_stuck_behind_a_flood(tmp_path):
    with isolated_platform_env(tmp_path, WORKER_THREADS="2") as env:
        platform = Platform(env)
        try:
            platform.wait_ready()
            flooder_key = platform.read_seed()["API_KEY"]
            quiet_key = manage(env, "create_api_key", manage(env, "create_tenant", "Quiet Co"))
            while _workers(env) == 0:
                time.sleep(0.5)
            _operator(env, "drain")
            with httpx.Client(base_url=platform.base_url, timeout=30) as client:
                flood = _submit_all(client, flooder_key, FLOOD, "flood")
                quiet = _submit_all(client, quiet_key, QUIET, "quiet")
                _operator(env, "undrain")
                deadline = time.monotonic() + 300
                finished = _finish_times(client, flooder_key, deadline) | _finish_times(client, quiet_key, deadline)
                assert set(finished) == set(flood) | set(quiet)
        finally:
            platform.stop()

    order = [task_id for _, task_id in sorted((at, task_id) for task_id, at in finished.items())]
    last_quiet = max(order.index(task_id) for task_id in quiet)
    # Every quiet task finishes before the flood does...
    assert last_quiet < max(order.index(task_id) for task_id in flood)
    # ...and by far: fair share interleaves the two tenants, so the quiet tenant's
    # 20 tasks are done within roughly the first 40 completions, not after 500.
    assert last_quiet < 60, last_quiet
