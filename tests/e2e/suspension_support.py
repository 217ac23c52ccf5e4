"""Shared pieces of the preemption and time-slicing end-to-end tests.

A stack of real processes (uvicorn, the scheduler, one worker with a log file
of its own, so its lines can be read in order), started on a fresh database;
tasks submitted over HTTP, streams read with a real WebSocket client, and the
counters only the task rows hold (preemptions, slices, first_token_at) read
through ``manage.py shell`` in the platform's own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import websockets

from tests.e2e.harness import Process, manage, stop_process, wait_finished, wait_for_readyz

TASK_TIMEOUT = 120.0


@dataclass
class Stack:
    env: dict[str, str]
    api_key: str
    worker: Process
    processes: list[Process] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.env['HOST']}:{self.env['PORT']}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.env['HOST']}:{self.env['PORT']}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30)

    def shell(self, code: str) -> str:
        return manage(self.env, "shell", "--no-imports", "-v", "0", "-c", code)


@contextlib.contextmanager
def running_stack(
    env: dict[str, str], tiny_path: str, slots: int, worker_env: dict[str, str] | None = None,
    models: tuple[dict, ...] = (),
) -> Iterator[Stack]:
    """Migrated database, a tenant and its key, the tiny model at ``tiny_path`` (built
    once per session: the ``tiny_model_path`` fixture) registered as "tiny", the
    ``models`` registered (see ``model``; "TINY_PATH" in an adapter_config stands for
    ``tiny_path``), then the server, the scheduler and one worker with ``slots`` slots
    (its environment: ``env`` with ``worker_env`` over it).

    The preparations are one ``manage.py shell`` (each Django start costs seconds on a
    loaded machine), and the three processes start side by side."""
    api_key = manage(env, "shell", "--no-imports", "-v", "0", "-c", f"""
import io
from django.core.management import call_command
from apps.catalog.models import LLMModel
from apps.catalog.services import ensure_tiny_model
call_command("migrate", interactive=False, verbosity=0)
ensure_tiny_model({tiny_path!r})
for model in {list(models)!r}:
    config = {{key: {tiny_path!r} if value == "TINY_PATH" else value for key, value in model["config"].items()}}
    LLMModel.objects.create(name=model["name"], adapter=model["adapter"], is_public=True, adapter_config=config,
                            time_slice_tokens=model.get("time_slice_tokens"))
out = io.StringIO()
call_command("create_tenant", "Acme Corp", stdout=out)
slug, out = out.getvalue().strip(), io.StringIO()
call_command("create_api_key", slug, stdout=out)
print(out.getvalue().strip())
""").splitlines()[-1]
    processes: list[Process] = []
    try:
        worker = Process({**env, **(worker_env or {})}, "worker",
                         [sys.executable, "manage.py", "run_worker", "--name", "worker", "--slots", str(slots)])
        processes.append(worker)
        processes.append(Process(env, "scheduler", [sys.executable, "manage.py", "run_scheduler"]))
        server = Process(env, "server", [sys.executable, "-m", "uvicorn", "llmagentos.asgi:application",
                                         "--host", env["HOST"], "--port", env["PORT"], "--no-access-log"])
        processes.append(server)
        uuid.UUID(worker.first_line())  # registered: it prints its id, and only that
        wait_for_readyz(f"http://{env['HOST']}:{env['PORT']}", server.process, server.log_text, 60)
        yield Stack(env=env, api_key=api_key, worker=worker, processes=processes)
    finally:
        for process in processes:
            stop_process(process.process)


@contextlib.contextmanager
def held_back(stack: Stack) -> Iterator[None]:
    """Tasks submitted inside all wait until the block ends, then start as the
    policy orders them: the tenants' running cap is 0 meanwhile (the dispatcher
    holds a capped tenant's tasks back). Time slicing needs a task waiting when a
    slice ends; submitted one after another, the first of a few short
    generations could otherwise end before the next one arrives."""
    caps = json.loads(stack.shell(
        "import json\nfrom apps.tenants.models import Plan\n"
        "print(json.dumps(dict(Plan.objects.values_list('pk', 'max_running'))))\n"
        "Plan.objects.update(max_running=0)"
    ))
    try:
        yield
    finally:
        stack.shell(
            "from apps.tenants.models import Plan\n"
            f"for pk, cap in {caps!r}.items():\n"
            "    Plan.objects.filter(pk=pk).update(max_running=cap)"
        )


def model(name: str, adapter: str, config: dict, time_slice_tokens: int | None = None) -> dict:
    """A public model for ``running_stack`` to register (the row, as the admin writes it)."""
    return {"name": name, "adapter": adapter, "config": config, "time_slice_tokens": time_slice_tokens}


def submit(client: httpx.Client, body: dict) -> str:
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_ended(client: httpx.Client, task_id: str, timeout: float = TASK_TIMEOUT) -> dict:
    """The task once it has ended (the harness's wait, with these tests' longer bound)."""
    return wait_finished(client, task_id, timeout)


def run_alone(client: httpx.Client, bodies: list[dict]) -> list[dict]:
    """Submit ``bodies`` together and wait for their ends: the uninterrupted runs
    when they fit the free slots (the caller checks that none was suspended)."""
    ids = [submit(client, body) for body in bodies]
    ended = [wait_ended(client, task_id) for task_id in ids]
    for body in ended:
        assert body["status"] == "succeeded", body
    return ended


def task_rows(stack: Stack, task_ids: list[str]) -> dict[str, dict]:
    """What the task rows hold beyond the API: {id: {preemptions, slices, attempt, state, times}}
    (times as aware datetimes, None where unset)."""
    rows = json.loads(stack.shell(f"""
import json
import re
from apps.tasks.models import Task
fields = ("id", "preemptions", "slices", "attempt", "started_at", "first_token_at", "finished_at", "state")
rows = Task.objects.filter(pk__in={task_ids!r}).values(*fields)
as_text = lambda value: value.isoformat() if hasattr(value, "isoformat") else str(value)
print(json.dumps({{str(row["id"]): row for row in rows}}, default=as_text))
"""))
    for row in rows.values():
        for name in ("started_at", "first_token_at", "finished_at"):
            row[name] = datetime.fromisoformat(row[name]) if row[name] else None
    return rows


def settled_usage(client: httpx.Client, timeout: float = 30.0) -> dict:
    """GET /api/v1/usage once nothing is reserved any more (charges are settled as tasks end)."""
    deadline = time.monotonic() + timeout
    while True:
        usage = client.get("/api/v1/usage").json()
        if usage["reserved_tokens"] == 0:
            return usage
        assert time.monotonic() < deadline, f"tokens still reserved: {usage}"
        time.sleep(0.2)


def auth(stack: Stack) -> dict:
    return {"additional_headers": {"Authorization": f"Bearer {stack.api_key}"}}


async def read_stream(stack: Stack, task_id: str, after: int | None = None,
                      seen: asyncio.Event | None = None, chunks_before_seen: int = 1) -> list[dict]:
    """Every message of a task's stream until the server closes it; ``seen`` is set
    once ``chunks_before_seen`` chunks arrived."""
    url = f"{stack.ws_url}/ws/tasks/{task_id}/" + (f"?after={after}" if after is not None else "")
    messages: list[dict] = []
    async with websockets.connect(url, **auth(stack)) as ws:
        async for raw in ws:
            messages.append(json.loads(raw))
            if seen is not None and len(chunks(messages)) >= chunks_before_seen:
                seen.set()
    return messages


def chunks(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "chunk"]


def kinds(messages: list[dict]) -> list[str]:
    return [m["type"] for m in messages]


def assert_whole_stream(messages: list[dict], output: str) -> None:
    """Every chunk once, in order (seq 1..n with no gap), their text the stored output,
    a "suspended" always followed by a "resumed", and "done" last."""
    stream = chunks(messages)
    assert [m["seq"] for m in stream] == list(range(1, len(stream) + 1))
    assert "".join(m["text"] for m in stream) == output
    assert "restart" not in kinds(messages)  # resumed on the same attempt, never started over
    marks = [kind for kind in kinds(messages) if kind in ("suspended", "resumed")]
    assert marks == ["suspended", "resumed"] * (len(marks) // 2), marks
    assert messages[-1]["type"] == "done" and messages[-1]["status"] == "succeeded", messages[-1]


_SEGMENT = re.compile(r" task_id=(\S+) attempt \d+ of (\S+) (started|resumed)$")
_SUSPENSION = re.compile(r" task_id=(\S+) attempt \d+ suspended \((\w+)\) after (\d+) completion tokens$")


def segments(worker: Process, model_name: str) -> list[str]:
    """The ids of ``model_name``'s tasks in the order their run segments started on ``worker``
    (its log: a start or a resume is one line, written when the worker claims the task)."""
    return [
        found.group(1) for line in worker.log_text().splitlines()
        if (found := _SEGMENT.search(line)) and found.group(2) == model_name
    ]


def suspensions(worker: Process) -> list[tuple[str, str, int]]:
    """(task id, reason, completion tokens so far) of each suspension ``worker`` logged, in order."""
    return [
        (found.group(1), found.group(2), int(found.group(3))) for line in worker.log_text().splitlines()
        if (found := _SUSPENSION.search(line))
    ]


def marked_segments(messages: list[dict]) -> list[str]:
    """The text each run segment of a stream delivered (the chunks between its
    "suspended"/"resumed" marks), in order."""
    parts = [""]
    for message in messages:
        if message["type"] == "chunk":
            parts[-1] += message["text"]
        elif message["type"] == "suspended":
            parts.append("")
    return parts
