"""Real worker processes: two `run_worker`s share the load, a drained one takes
nothing new and resumes when undrained, and SIGTERM lets a worker finish its
task in flight before it exits 0, marked stopped.

Tasks arrive over HTTP (a uvicorn process); drains and the checks of which
worker ran what go through `manage.py shell`, in the platform's own database.
Runs on SQLite (embedded) and on PostgreSQL + Redis, like the whole suite.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.e2e.harness import Process, start_server, start_worker
from tests.integration.manage_cli import describe, manage, shell

pytestmark = pytest.mark.e2e

SLOW_MODEL = "echo-slow"  # 5 words per second: a 10-word prompt keeps a slot busy for 2 s
SLOW_PROMPT_WORDS = 10
START_TIMEOUT = 60.0
TASK_TIMEOUT = 60.0


def _prompt(label: str) -> str:
    return " ".join([label] + [f"w{i}" for i in range(SLOW_PROMPT_WORDS - 1)])


def _django(env: dict[str, str], code: str) -> str:
    result = shell(code, env=env)
    assert result.returncode == 0, describe(result)
    return result.stdout.strip()


def _operator_command(env: dict[str, str], *args: str) -> str:
    result = manage(*args, env=env)
    assert result.returncode == 0, describe(result)
    return result.stdout.strip()


def _workers_of(env: dict[str, str], task_ids: list[str]) -> dict[str, str]:
    """{task id: name of the worker that ran it}."""
    return json.loads(_django(env, f"""
import json
from apps.tasks.models import Task
rows = Task.objects.filter(pk__in={task_ids!r}).values_list("id", "worker_name")
print(json.dumps({{str(pk): name for pk, name in rows}}))
"""))


def _worker_state(env: dict[str, str], name: str) -> str:
    return _django(env, f"from apps.workers.models import Worker; print(Worker.objects.get(name={name!r}).state)")


def _change_worker(env: dict[str, str], name: str, change: str, wait_for_state: str) -> None:
    """Drain or undrain through the service layer, then wait until the worker's row shows ``wait_for_state``."""
    _django(env, f"""
import time
from apps.workers import services
from apps.workers.models import Worker
services.{change}(Worker.objects.get(name={name!r}))
deadline = time.monotonic() + {START_TIMEOUT}
while Worker.objects.get(name={name!r}).state != {wait_for_state!r}:
    assert time.monotonic() < deadline, "the worker never reached {wait_for_state}"
    time.sleep(0.05)
""")


def _submit(client: httpx.Client, prompt: str) -> str:
    created = client.post("/api/v1/tasks", json={"model": SLOW_MODEL, "prompt": prompt})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _wait_for_status(
    client: httpx.Client, task_id: str, statuses: tuple[str, ...], timeout: float = TASK_TIMEOUT
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/tasks/{task_id}").json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"task {task_id} never reached {statuses}: {body}"
        time.sleep(0.1)


def _run_all(client: httpx.Client, labels: list[str]) -> list[str]:
    """Submit one slow task per label; wait until all succeeded with their full output."""
    ids = [_submit(client, _prompt(label)) for label in labels]
    for task_id, label in zip(ids, labels, strict=True):
        done = _wait_for_status(client, task_id, ("succeeded", "failed", "cancelled"))
        assert (done["status"], done["output"]) == ("succeeded", _prompt(label)), done
    return ids


def test_workers_share_the_load_drain_and_stop_gracefully(platform_env):
    env = {**platform_env, "WORKER_HEARTBEAT_SECONDS": "0.5"}
    processes: list[Process] = []
    try:
        _operator_command(env, "migrate", "--no-input", "-v", "0")
        api_key = _operator_command(env, "create_api_key", _operator_command(env, "create_tenant", "Acme Corp"))
        _django(env, f"""
from apps.catalog.models import LLMModel
LLMModel.objects.create(name={SLOW_MODEL!r}, adapter="echo", adapter_config={{"words_per_second": 5}}, is_public=True)
""")
        processes.append(start_server(env))
        # The dispatcher hands the workers what their free slots can take.
        processes.append(Process(env, "scheduler", [sys.executable, "manage.py", "run_scheduler"]))
        worker_a = start_worker(env, "e2e-a")
        worker_b = start_worker(env, "e2e-b")
        processes += [worker_a, worker_b]
        client = httpx.Client(
            base_url=f"http://{env['HOST']}:{env['PORT']}", headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )

        # Two workers, two slots each, four 2-second tasks: both take some.
        shared = _run_all(client, [f"shared{i}" for i in range(4)])
        assert set(_workers_of(env, shared).values()) == {"e2e-a", "e2e-b"}

        # Drained (confirmed by the worker itself), a worker takes nothing new.
        _change_worker(env, "e2e-a", "drain", wait_for_state="drained")
        after_drain = _run_all(client, [f"drained{i}" for i in range(4)])
        assert set(_workers_of(env, after_drain).values()) == {"e2e-b"}

        # SIGTERM mid-task: B finishes its task in flight and takes no new one.
        in_flight = _submit(client, _prompt("in-flight"))
        _wait_for_status(client, in_flight, ("running",))
        signalled_at = datetime.now(UTC)
        worker_b.process.send_signal(signal.SIGTERM)
        worker_b.wait_for_log("SIGTERM: taking no new tasks")
        left_over = _submit(client, _prompt("left-over"))
        assert worker_b.stop() == 0, worker_b.log_text()

        finished = client.get(f"/api/v1/tasks/{in_flight}").json()
        assert (finished["status"], finished["output"]) == ("succeeded", _prompt("in-flight")), finished
        # It really was in flight when the signal came.
        assert datetime.fromisoformat(finished["finished_at"].replace("Z", "+00:00")) > signalled_at
        assert _workers_of(env, [in_flight]) == {in_flight: "e2e-b"}
        assert _worker_state(env, "e2e-b") == "stopped"
        assert client.get(f"/api/v1/tasks/{left_over}").json()["status"] == "queued"

        # Undrained, A takes the task nobody took.
        _change_worker(env, "e2e-a", "undrain", wait_for_state="active")
        done = _wait_for_status(client, left_over, ("succeeded", "failed", "cancelled"))
        assert (done["status"], done["output"]) == ("succeeded", _prompt("left-over")), done
        assert _workers_of(env, [left_over]) == {left_over: "e2e-a"}
        assert worker_a.stop() == 0, worker_a.log_text()
        assert _worker_state(env, "e2e-a") == "stopped"
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.process.kill()
                process.process.wait()
