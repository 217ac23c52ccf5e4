"""A model registered while the platform runs is served by the running worker, with no
restart: one through `manage.py add_model`, one through POST /api/v1/ops/models.

The platform is `make run`'s process tree (run_platform: uvicorn, the scheduler and
one worker serving every enabled model). Runs on SQLite (embedded) and on
PostgreSQL + Redis, like the whole suite.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.harness import Platform, manage, wait_finished

pytestmark = pytest.mark.e2e

PROMPT = "registered while the worker was running"


@pytest.fixture
def platform_env(tmp_path):
    # Heartbeats every second: the worker learns of the new models sooner (it would at 5 s too).
    with isolated_platform_env(tmp_path, WORKER_HEARTBEAT_SECONDS="1") as env:
        yield env


def _workers(ops: httpx.Client) -> dict[str, tuple]:
    listed = ops.get("/api/v1/ops/workers")
    assert listed.status_code == 200, listed.text
    return {w["id"]: (w["pid"], w["started_at"], w["status"]) for w in listed.json()["data"]}


def test_a_running_worker_serves_models_registered_by_command_and_api(platform_env):
    platform = Platform(platform_env)
    try:
        platform.wait_ready()
        seed = platform.read_seed()
        token = manage(platform_env, "create_operator_token", seed["ADMIN_USER"])
        tenant = httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {seed['API_KEY']}"},
                              timeout=10)
        ops = httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        with tenant, ops:
            workers = _workers(ops)
            assert workers and all(status == "active" for _, _, status in workers.values()), workers

            printed = json.loads(manage(platform_env, "add_model", "echo-cli", "--adapter", "echo", "--public"))
            assert printed["name"] == "echo-cli"
            posted = ops.post("/api/v1/ops/models", json={"name": "echo-api", "adapter": "echo", "is_public": True})
            assert posted.status_code == 201, posted.text

            for model in ("echo-cli", "echo-api"):
                created = tenant.post("/api/v1/tasks", json={"model": model, "prompt": PROMPT})
                assert created.status_code == 201, created.text
                done = wait_finished(tenant, created.json()["id"])
                assert (done["status"], done["output"]) == ("succeeded", PROMPT), done

            # The same worker processes, never restarted, now list the new models.
            assert _workers(ops) == workers
            served = {name for w in ops.get("/api/v1/ops/workers").json()["data"] for name in w["models"]}
            assert {"echo-cli", "echo-api"} <= served
    finally:
        assert platform.stop() == 0
