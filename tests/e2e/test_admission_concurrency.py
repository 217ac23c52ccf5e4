"""The issue's proof of atomic admission: three real API server processes on one
database, 50 submissions at once spread across them, a budget that holds
exactly 10 of them → exactly 10 admitted (201), 40 refused (402), and the
ledger never past the budget. Runs on SQLite (three processes on one file:
WAL, IMMEDIATE transactions) and on PostgreSQL + Redis, like the whole suite.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO_ROOT, free_port, isolated_platform_env
from tests.e2e.harness import wait_for_readyz
from tests.integration.manage_cli import describe, manage

pytestmark = pytest.mark.e2e

SERVERS = 3
SUBMISSIONS = 50
ADMITTED = 10
# The echo model counts words: 3 prompt tokens + max_tokens 7 = 10 tokens at worst.
TASK = {"model": "echo", "prompt": "one two three", "max_tokens": 7}
WORST_CASE = 10
BUDGET = ADMITTED * WORST_CASE
START_TIMEOUT = 60.0


def _operator(env: dict[str, str], *args: str) -> str:
    result = manage(*args, env=env, timeout=300)
    assert result.returncode == 0, describe(result)
    return result.stdout.strip()


class Server:
    def __init__(self, env: dict[str, str], index: int) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = Path(env["DATA_DIR"]).parent / f"server-{index}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "llmagentos.asgi:application",
             "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"),
        )

    def wait_ready(self) -> None:
        wait_for_readyz(self.base_url, self.process, self.log.read_text, START_TIMEOUT)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def servers(tmp_path):
    with isolated_platform_env(tmp_path) as env:
        _operator(env, "migrate", "--no-input", "-v", "0")
        slug = _operator(env, "create_tenant", "Concurrent Corp")
        key = _operator(env, "create_api_key", slug)
        # Only the budget may refuse: the other limits are far away.
        _operator(
            env, "set_plan", slug, "--budget-tokens", str(BUDGET),
            "--rpm", "100000", "--tpm", "100000000", "--max-queued", "100000",
        )
        started = [Server(env, index) for index in range(SERVERS)]
        try:
            for server in started:
                server.wait_ready()
            yield started, key
        finally:
            for server in started:
                server.stop()


def test_fifty_concurrent_submissions_on_three_servers_admit_exactly_what_the_budget_holds(servers):
    started, key = servers
    headers = {"Authorization": f"Bearer {key}"}
    clients = [httpx.Client(base_url=s.base_url, headers=headers, timeout=120) for s in started]
    go = threading.Barrier(SUBMISSIONS)

    def submit(index: int) -> tuple[int, dict]:
        client = clients[index % SERVERS]
        go.wait()  # all 50 requests leave together
        response = client.post("/api/v1/tasks", json=TASK)
        return response.status_code, response.json()

    try:
        with ThreadPoolExecutor(max_workers=SUBMISSIONS) as pool:
            results = list(pool.map(submit, range(SUBMISSIONS)))

        statuses = Counter(status for status, _ in results)
        assert statuses == {201: ADMITTED, 402: SUBMISSIONS - ADMITTED}, [body for _, body in results]
        assert all(body["error"]["code"] == "budget_exceeded" for status, body in results if status == 402)
        admitted_ids = {body["id"] for status, body in results if status == 201}
        assert len(admitted_ids) == ADMITTED

        # Every server sees the same ledger: exactly the admitted tasks' worst case, nothing spent yet.
        for client in clients:
            usage = client.get("/api/v1/usage").json()
            assert usage["spent_tokens"] + usage["reserved_tokens"] <= BUDGET
            assert (usage["spent_tokens"], usage["reserved_tokens"], usage["remaining_tokens"]) == (0, BUDGET, 0)
            assert sum(row["tasks"] for row in usage["by_key"]) == ADMITTED
        listed = clients[0].get("/api/v1/tasks", params={"page_size": 200}).json()["results"]
        assert {task["id"] for task in listed} == admitted_ids
    finally:
        for client in clients:
            client.close()
