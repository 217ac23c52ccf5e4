"""Preemption on the real stack: an interactive task's time to first token on an
idle worker, and behind a worker full of batch generations with preemption on
and off, in the same run.

    .venv/bin/python bench/preemption.py [--backend embedded|distributed] [--reps 5]
        [--batch-tokens 1500] [--keep-logs DIR] [--json PATH]

One stack of real processes on a fresh database (embedded: SQLite in a
temporary DATA_DIR; distributed: a new PostgreSQL database and a Huey name of
its own on Redis, 127.0.0.1): uvicorn, ``run_scheduler`` and one ``run_worker``
with 4 slots serving the tiny local model (tests/e2e/suspension_support's
stack, the one the preemption end-to-end tests use). Two phases, each with a
scheduler of its own (the worker and the server stay): PREEMPTION_ENABLED=true,
then false. In each phase, ``--reps`` times:

* idle:  one interactive task on the idle worker;
* full:  four batch generations (``--batch-tokens`` each) submitted and read
  over WebSockets until all four stream and have run past the minimum run
  time (PREEMPT_MIN_RUN_SECONDS, plus 0.2 s), then the same interactive task;
  the four are cancelled once it has its first token and the next repetition
  starts on an idle worker again. Without preemption the interactive task
  waits for the first of the four to end, so that case's figure grows with
  ``--batch-tokens``.

Each phase starts with one unmeasured interactive task (the new scheduler has
taken the lead, the worker has the model loaded).

Time to first token: from just before the submission (POST /api/v1/tasks) to
the first chunk on the task's WebSocket, opened right after it (a chunk that
came first is replayed at once: the figure never misses it). Reported as p50
and p90 per case, and each case's difference from the idle case of its phase.

With preemption on it also reads what a suspension costs, from the platform's
own log lines (millisecond timestamps, one clock): suspend — the scheduler's
"preempting task X" to the worker's "X ... suspended (preempted)" (the slot is
free then); resume — the worker's "X ... resumed" (claimed again) to X's next
chunk on its WebSocket. bench/simulate.py's default costs come from these.

Only 127.0.0.1 is used; everything started is stopped and the temporary files
(and the PostgreSQL database) removed, on success or failure. A figure, never
an assertion: this is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402

from tests.e2e.conftest import isolated_platform_env  # noqa: E402
from tests.e2e.harness import Process, stop_process  # noqa: E402
from tests.e2e.suspension_support import Stack, auth, running_stack  # noqa: E402

SLOTS = 4
MIN_RUN_SECONDS = 0.5  # PREEMPT_MIN_RUN_SECONDS for the run (the settings' default)
INTERACTIVE = {"model": "tiny", "prompt": "hello there", "max_tokens": 8, "temperature": 0,
               "priority": "interactive"}
_TIME = r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) "
_PREEMPTING = re.compile(_TIME + r".* preempting task (\S+) \(")
_SUSPENDED = re.compile(_TIME + r".* task_id=(\S+) attempt \d+ suspended \(preempted\)")
_RESUMED = re.compile(_TIME + r".* task_id=(\S+) attempt \d+ of \S+ resumed$")


@dataclass
class Phase:
    preemption: bool
    idle: list[float] = field(default_factory=list)  # seconds to first token
    full: list[float] = field(default_factory=list)
    preempted: int = 0  # batch tasks suspended during the phase
    suspend: list[float] = field(default_factory=list)  # seconds, asked -> slot free
    resume: list[float] = field(default_factory=list)  # seconds, claimed again -> next chunk


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}"


def log_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def first_token(stack: Stack, client: httpx.AsyncClient, body: dict) -> tuple[str, float]:
    """Submit ``body``; the task's id and the seconds until its first chunk arrived."""
    began = time.time()
    response = await client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    async with websockets.connect(f"{stack.ws_url}/ws/tasks/{task_id}/", **auth(stack)) as ws:
        async for raw in ws:
            if json.loads(raw)["type"] == "chunk":
                return task_id, time.time() - began
    raise RuntimeError(f"task {task_id}'s stream ended without a chunk")


async def follow(stack: Stack, task_id: str, streaming: asyncio.Event, marks: list[tuple[float, str]]) -> None:
    """Read a batch task's stream, noting each message's arrival; ``streaming`` is set at its second chunk."""
    seen = 0
    async with websockets.connect(f"{stack.ws_url}/ws/tasks/{task_id}/", **auth(stack)) as ws:
        async for raw in ws:
            kind = json.loads(raw)["type"]
            marks.append((time.time(), kind))
            seen += kind == "chunk"
            if seen >= 2:
                streaming.set()


async def repetition(stack: Stack, batch_tokens: int, rep: int, phase: Phase,
                     streams: dict[str, list[tuple[float, str]]]) -> None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=60) as client:
        _, idle = await first_token(stack, client, INTERACTIVE)
        phase.idle.append(idle)
        batch = [{"model": "tiny", "prompt": f"story number {rep * SLOTS + i}", "max_tokens": batch_tokens,
                  "temperature": 0, "priority": "batch"} for i in range(SLOTS)]
        batch_ids = [(await client.post("/api/v1/tasks", json=body)).json()["id"] for body in batch]
        events = [asyncio.Event() for _ in batch_ids]
        for task_id in batch_ids:
            streams[task_id] = []
        readers = [asyncio.create_task(follow(stack, task_id, event, streams[task_id]))
                   for task_id, event in zip(batch_ids, events, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), 120)
        await asyncio.sleep(MIN_RUN_SECONDS + 0.2)  # every batch generation may be preempted now
        _, full = await first_token(stack, client, INTERACTIVE)
        phase.full.append(full)
        if phase.preemption:
            await asyncio.sleep(1.0)  # a suspended batch task resumes: its resume cost is read from it
        for task_id in batch_ids:
            await client.post(f"/api/v1/tasks/{task_id}/cancel")
        await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 120)


async def warm_up(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=60) as client:
        await asyncio.wait_for(first_token(stack, client, INTERACTIVE), 180)


def costs(stack: Stack, scheduler: Process, streams: dict[str, list[tuple[float, str]]], phase: Phase) -> None:
    """Suspend and resume costs of the phase's preemptions, from the log lines and the streams."""
    asked = {found.group(2): log_time(found.group(1)) for line in scheduler.log_text().splitlines()
             if (found := _PREEMPTING.search(line))}
    worker_log = stack.worker.log_text().splitlines()
    freed = {found.group(2): log_time(found.group(1)) for line in worker_log if (found := _SUSPENDED.search(line))}
    resumed = {found.group(2): log_time(found.group(1)) for line in worker_log if (found := _RESUMED.search(line))}
    phase.preempted = len(freed.keys() & streams.keys())
    phase.suspend = [freed[task_id] - asked[task_id] for task_id in freed.keys() & asked.keys() & streams.keys()]
    for task_id in resumed.keys() & streams.keys():
        # Its next chunk after the resumed mark: the first token of the resumed segment.
        after = [at for at, kind in streams[task_id] if kind == "chunk" and at >= resumed[task_id]]
        marks = [kind for _, kind in streams[task_id]]
        if after and "resumed" in marks and marks.index("resumed") < len(marks) - 1:
            phase.resume.append(after[0] - resumed[task_id])


def start_scheduler(stack: Stack, preemption: bool) -> Process:
    env = {**stack.env, "PREEMPTION_ENABLED": "true" if preemption else "false",
           "PREEMPT_MIN_RUN_SECONDS": str(MIN_RUN_SECONDS)}
    scheduler = Process(env, f"scheduler-{'on' if preemption else 'off'}",
                        [sys.executable, "manage.py", "run_scheduler"])
    stack.processes.append(scheduler)  # running_stack stops it at the end, whatever happens
    return scheduler


def run(args: argparse.Namespace) -> list[Phase]:
    if args.backend == "distributed":
        os.environ["DATABASE_URL"] = args.database_url
        os.environ["REDIS_URL"] = args.redis_url
    else:
        os.environ.pop("DATABASE_URL", None)
    phases = [Phase(True), Phase(False)]
    with tempfile.TemporaryDirectory(prefix="bench-preemption-") as tmp:
        with isolated_platform_env(Path(tmp), PREEMPT_MIN_RUN_SECONDS=str(MIN_RUN_SECONDS)) as env:
            tiny_path = str(Path(tmp) / "tiny")  # built once for the run (ensure_tiny_model)
            with running_stack(env, tiny_path, slots=SLOTS) as stack:
                # The stack's own scheduler goes: each phase has one started with its setting.
                first = next(p for p in stack.processes if p.name == "scheduler")
                stop_process(first.process)
                for phase in phases:
                    scheduler = start_scheduler(stack, phase.preemption)
                    # Unmeasured: the new scheduler leads and the worker has the model loaded.
                    asyncio.run(warm_up(stack))
                    streams: dict[str, list[tuple[float, str]]] = {}
                    for rep in range(args.reps):
                        asyncio.run(repetition(stack, args.batch_tokens, rep, phase, streams))
                        print(f"  preemption {'on ' if phase.preemption else 'off'} rep {rep + 1}: idle "
                              f"{phase.idle[-1] * 1000:.0f} ms, full {phase.full[-1] * 1000:.0f} ms", flush=True)
                    costs(stack, scheduler, streams, phase)
                    stop_process(scheduler.process)
                if args.keep_logs:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    for process in stack.processes:
                        shutil.copy(process.log, args.keep_logs / process.log.name)
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("embedded", "distributed"), default="embedded")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per case and phase")
    parser.add_argument("--batch-tokens", type=int, default=1500, help="max_tokens of each batch generation")
    parser.add_argument("--database-url",
                        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="distributed: a server to create the run's database on")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--keep-logs", type=Path, help="copy the platform processes' logs into this folder")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    print(f"{args.backend}: tiny model, one worker of {SLOTS} slots, {args.reps} repetitions per case; "
          f"{os.cpu_count()} CPUs; minimum run time {MIN_RUN_SECONDS:g} s", flush=True)
    began = time.monotonic()
    phases = run(args)
    print(f"\ntime to first token, ms (p50 / p90), {args.reps} each; finished in {time.monotonic() - began:.0f} s")
    figures: list[dict[str, object]] = []
    report = {"backend": args.backend, "reps": args.reps, "batch_tokens": args.batch_tokens,
              "cpus": os.cpu_count(), "phases": figures}
    for phase in phases:
        name = "on " if phase.preemption else "off"
        idle50, idle90 = percentile(phase.idle, 0.5), percentile(phase.idle, 0.9)
        full50, full90 = percentile(phase.full, 0.5), percentile(phase.full, 0.9)
        print(f"  preemption {name}: idle {idle50 * 1000:7.0f} / {idle90 * 1000:7.0f}   "
              f"behind 4 batch {full50 * 1000:7.0f} / {full90 * 1000:7.0f}   "
              f"over idle {(full50 - idle50) * 1000:+7.0f} / {(full90 - idle90) * 1000:+7.0f}")
        if phase.preemption:
            print(f"    {phase.preempted} batch generations suspended; suspend (asked -> slot free) "
                  f"p50 / p90 {ms(phase.suspend, 0.5)} / {ms(phase.suspend, 0.9)} ms ({len(phase.suspend)}); "
                  f"resume (claimed again -> next chunk) p50 / p90 {ms(phase.resume, 0.5)} / "
                  f"{ms(phase.resume, 0.9)} ms ({len(phase.resume)})")
        figures.append({
            "preemption": phase.preemption, "idle_s": phase.idle, "full_s": phase.full,
            "preempted": phase.preempted, "suspend_s": phase.suspend, "resume_s": phase.resume,
        })
    on = phases[0]
    over = (percentile(on.full, 0.5) - percentile(on.idle, 0.5)) * 1000
    print(f"  {'meets' if over <= 50 else 'MISSES'} target — preemption on: first token behind a full worker "
          f"{over:+.0f} ms over idle at p50 (≤ 50 ms)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
