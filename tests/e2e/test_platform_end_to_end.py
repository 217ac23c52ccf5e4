"""`make run`'s process tree for real: run_platform starts uvicorn, the scheduler
and a worker; a tenant submits over HTTP and polls until its tasks succeeded,
on the echo model and on the tiny local transformers model.

Runs on SQLite (embedded) and on PostgreSQL + Redis, like the whole suite.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Platform, manage, wait_finished

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
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_submit_over_http_and_get_the_result(platform_env):
    platform_env["SERVER_PROCESSES"] = "2"  # two ASGI server processes on one socket (run_platform)
    platform = Platform(platform_env)
    try:
        platform.wait_ready()
        # The first run seeds and prints the key and admin login on stdout.
        seed = platform.read_seed()
        assert seed["API_KEY"].startswith("lla_")
        assert seed["ADMIN_USER"] == "admin"
        assert seed["ADMIN_PASSWORD"]

        with httpx.Client(
            base_url=platform.base_url, headers={"Authorization": f"Bearer {seed['API_KEY']}"}, timeout=10
        ) as client:
            assert {m["id"] for m in client.get("/api/v1/models").json()["data"]} >= {"echo", "tiny"}

            created = client.post("/api/v1/tasks", json={"model": "echo", "prompt": PROMPT, "client_ref": "order-1"})
            assert created.status_code == 201, created.text
            assert created.headers["X-Request-ID"]
            task = wait_finished(client, created.json()["id"])
            assert task["status"] == "succeeded"
            assert task["output"] == PROMPT
            assert task["usage"] == {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}

            # The tiny model (built by the first run) generates real tokens.
            tiny = client.post("/api/v1/tasks", json={"model": "tiny", "prompt": "hello", "max_tokens": 8, "seed": 1})
            assert tiny.status_code == 201, tiny.text
            tiny_task = wait_finished(client, tiny.json()["id"])
            assert tiny_task["status"] == "succeeded", tiny_task["error"]
            assert tiny_task["usage"]["prompt_tokens"] > 0
            assert 0 < tiny_task["usage"]["completion_tokens"] <= 8

            # A second tenant, made with the operator commands, cannot see it.
            slug = manage(platform_env, "create_tenant", "Other Co")
            other_key = manage(platform_env, "create_api_key", slug)
            other = client.get(f"/api/v1/tasks/{task['id']}", headers={"Authorization": f"Bearer {other_key}"})
            assert other.status_code == 404
            assert other.json()["error"]["type"] == "not_found_error"

        # The two ASGI server processes, the scheduler (the global queue's periodic
        # jobs, in one place whatever the number of workers) and the embedded worker.
        children = _children_of(platform.process.pid)
        assert len(children) == 4
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
    assert again.process.stdout.read() == ""
