"""`make run`'s process tree for real: run_platform starts uvicorn, the scheduler
and a worker; a tenant submits over HTTP and polls until the echo task succeeded.

Runs on SQLite (embedded) and on PostgreSQL + Redis, like the whole suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

PROMPT = "the quick brown fox jumps over the lazy dog secretword-okapi"


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesised command name) is the parent pid.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Platform:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.base_url = f"http://{env['HOST']}:{env['PORT']}"
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_platform"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(Path(env["DATA_DIR"]).parent / "platform.log", "ab"),
            text=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "run_platform exited during start-up"
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("the platform never became ready")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=40)

    def stdout_after_stop(self) -> str:
        return self.process.stdout.read()


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _wait_finished(client: httpx.Client, task_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/tasks/{task_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish: {body}")


def test_submit_over_http_and_get_the_result(platform_env):
    platform = Platform(platform_env)
    try:
        platform.wait_ready()
        # The first run seeds and prints the key and admin login on stdout.
        seed_lines = [platform.process.stdout.readline().strip() for _ in range(3)]
        assert seed_lines[0].startswith("API_KEY=lla_")
        assert seed_lines[1] == "ADMIN_USER=admin"
        assert seed_lines[2].startswith("ADMIN_PASSWORD=")
        api_key = seed_lines[0].split("=", 1)[1]

        with httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10) as client:
            created = client.post("/api/v1/tasks", json={"model": "echo", "prompt": PROMPT, "client_ref": "order-1"})
            assert created.status_code == 201, created.text
            assert created.headers["X-Request-ID"]
            task = _wait_finished(client, created.json()["id"])
            assert task["status"] == "succeeded"
            assert task["output"] == PROMPT
            assert task["usage"] == {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}

            # A second tenant, made with the operator commands, cannot see it.
            slug = _manage(platform_env, "create_tenant", "Other Co")
            other_key = _manage(platform_env, "create_api_key", slug)
            other = client.get(f"/api/v1/tasks/{task['id']}", headers={"Authorization": f"Bearer {other_key}"})
            assert other.status_code == 404
            assert other.json()["error"]["type"] == "not_found_error"

        # The ASGI server, the scheduler (the global queue's periodic jobs, in
        # one place whatever the number of workers) and the embedded worker.
        children = _children_of(platform.process.pid)
        assert len(children) == 3
    finally:
        code = platform.stop()
    assert code == 0
    # SIGTERM stopped the whole tree.
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in children)

    if not platform_env.get("DATABASE_URL"):
        # Embedded mode: the SQLite files hold no plaintext prompt or output.
        data_dir = Path(platform_env["DATA_DIR"])
        for path in data_dir.glob("*.sqlite3*"):
            assert b"secretword-okapi" not in path.read_bytes(), path

    # The second run does not seed again and prints nothing on stdout.
    again = Platform(platform_env)
    try:
        again.wait_ready()
    finally:
        assert again.stop() == 0
    assert again.stdout_after_stop() == ""
