"""One scheduler leads, a second one started beside it stands by: it says whom
it waits for and dispatches nothing while the leader lives; when the leader is
SIGKILLed it takes over by itself (apps.scheduler.leadership) and the tasks
submitted afterwards run.

Real processes: a uvicorn server, two `run_scheduler`s and one `run_worker`,
on SQLite (the file lock) or PostgreSQL + Redis (the advisory lock), like the
whole suite. The waits are guards against a hang, not measurements.
"""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from tests.e2e.harness import Process, start_server, start_worker
from tests.integration.manage_cli import describe, manage, shell

pytestmark = pytest.mark.e2e

MODEL = "echo-standby"
TASK_TIMEOUT = 60.0
DISPATCHED = "dispatched to the workers of"


def _run(env: dict[str, str], *args: str) -> str:
    result = manage(*args, env=env)
    assert result.returncode == 0, describe(result)
    return result.stdout.strip()


def _scheduler(env: dict[str, str], name: str) -> Process:
    return Process(env, name, [sys.executable, "manage.py", "run_scheduler"])


def _run_tasks(client: httpx.Client, label: str, count: int = 3) -> None:
    """Submit ``count`` tasks and wait until each succeeded with its output."""
    prompts = [f"{label} {n}" for n in range(count)]
    ids = []
    for prompt in prompts:
        created = client.post("/api/v1/tasks", json={"model": MODEL, "prompt": prompt})
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    for task_id, prompt in zip(ids, prompts, strict=True):
        deadline = time.monotonic() + TASK_TIMEOUT
        while (body := client.get(f"/api/v1/tasks/{task_id}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, f"task {task_id} never ended: {body}"
            time.sleep(0.1)
        assert (body["status"], body["output"]) == ("succeeded", prompt), body


def test_a_standby_waits_while_the_leader_lives_and_takes_over_when_it_is_killed(platform_env):
    env = {**platform_env, "WORKER_HEARTBEAT_SECONDS": "0.5"}
    processes: list[Process] = []
    try:
        _run(env, "migrate", "--no-input", "-v", "0")
        api_key = _run(env, "create_api_key", _run(env, "create_tenant", "Acme Corp"))
        created = shell(
            "from apps.catalog.models import LLMModel; "
            f"LLMModel.objects.create(name={MODEL!r}, adapter='echo', is_public=True, "
            "adapter_config={'words_per_second': 50})",
            env=env,
        )
        assert created.returncode == 0, describe(created)
        processes.append(start_server(env))
        leader = _scheduler(env, "scheduler-a")
        processes.append(leader)
        leader.wait_for_log("leading as")
        standby = _scheduler(env, "scheduler-b")
        processes.append(standby)
        standby.wait_for_log(f"standby: another scheduler leads ({leader.process.pid}@")
        processes.append(start_worker(env, "e2e-standby"))
        client = httpx.Client(
            base_url=f"http://{env['HOST']}:{env['PORT']}", headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )

        _run_tasks(client, "while the leader lives")
        assert DISPATCHED in leader.log_text()
        assert DISPATCHED not in standby.log_text(), standby.log_text()
        assert "leading as" not in standby.log_text()

        leader.process.kill()  # SIGKILL: it releases nothing itself
        leader.process.wait()
        standby.wait_for_log("leading as")

        _run_tasks(client, "after the takeover")
        assert DISPATCHED in standby.log_text()
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.process.kill()
                process.process.wait()
