"""Starting the real platform (run_platform: uvicorn + consumer) for end-to-end tests."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


class Platform:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.base_url = f"http://{env['HOST']}:{env['PORT']}"
        self.ws_url = f"ws://{env['HOST']}:{env['PORT']}"
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_platform"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(Path(env["DATA_DIR"]).parent / "platform.log", "ab"),
            text=True,
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        # Generous: the first start builds the tiny model, and CI machines are shared.
        wait_for_readyz(self.base_url, self.process, lambda: "run_platform", timeout)

    def read_seed(self) -> dict[str, str]:
        """The first run's three KEY=value lines from stdout."""
        lines = [self.process.stdout.readline().strip() for _ in range(3)]
        return dict(line.split("=", 1) for line in lines)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        # The supervisor gives its children 20 s, then kills them; slack for a loaded machine.
        return self.process.wait(timeout=120)


class Process:
    """A platform process with its stderr in a log file (shown when a check fails)."""

    def __init__(self, env: dict[str, str], name: str, argv: list[str]) -> None:
        self.name = name
        self.log = Path(env["DATA_DIR"]).parent / f"{name}.log"
        self.process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def first_line(self, timeout: float = 60.0) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, f"{self.name} printed nothing in {timeout}s:\n{self.log_text()}"
        return self.process.stdout.readline().strip()

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert time.monotonic() < deadline, f"{self.name} never logged {text!r}:\n{self.log_text()}"
            time.sleep(0.05)

    def stop(self, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not stop after SIGTERM:\n{self.log_text()}") from exc


def wait_for_readyz(
    base_url: str, process: subprocess.Popen, describe: Callable[[], str], timeout: float = 180.0
) -> None:
    """Wait until ``process`` serves /readyz with 200; fail (with ``describe()``,
    e.g. its log) if it exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the server exited during start-up: {describe()}"
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the server never became ready: {describe()}"
        time.sleep(0.2)


def start_worker(env: dict[str, str], name: str, slots: int = 2) -> Process:
    """``run_worker`` registered (it prints its id, and only that, on stdout)."""
    worker = Process(env, name, [sys.executable, "manage.py", "run_worker", "--name", name, "--slots", str(slots)])
    printed = worker.first_line()
    uuid.UUID(printed)
    return worker


def start_server(env: dict[str, str], timeout: float = 60.0) -> Process:
    """uvicorn serving the API on env's HOST and PORT, ready (/readyz)."""
    server = Process(
        env, "server",
        [sys.executable, "-m", "uvicorn", "llmagentos.asgi:application",
         "--host", env["HOST"], "--port", env["PORT"], "--no-access-log"],
    )
    wait_for_readyz(f"http://{env['HOST']}:{env['PORT']}", server.process, server.log_text, timeout)
    return server


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (the graceful stop every platform process honours), then kill after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def manage(env: dict[str, str], *args: str) -> str:
    """Run a manage.py command against the platform's database; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def add_echo_model(env: dict[str, str], name: str, words_per_second: float) -> None:
    """An operator adding a public echo model with a given pace (as in the admin)."""
    manage(
        env,
        "shell",
        "-c",
        "from apps.catalog.models import LLMModel; "
        f"LLMModel.objects.create(name={name!r}, adapter='echo', is_public=True, "
        f"adapter_config={{'words_per_second': {words_per_second}}})",
    )


def wait_finished(client: httpx.Client, task_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/tasks/{task_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish: {body}")
