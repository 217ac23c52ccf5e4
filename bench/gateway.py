"""The gateway's cost: streamed completions through the platform against the same
upstream called directly (and through LiteLLM's proxy, when it is installed), in one run.

    .venv/bin/python bench/gateway.py [--modes embedded,distributed] [--concurrency 1,20]
        [--seconds 20] [--warmup 3] [--idle 60] [--stages 100] [--tokens 16] [--slots 32]
        [--servers N] [--api v1|tasks] [--litellm PATH|none] [--profile DIR] [--json PATH]

What runs (127.0.0.1 only; everything is stopped and removed at the end):

- the upstream: bench/zero_upstream.py, an OpenAI-compatible server with no
  model behind it: a streamed request gets its --tokens tokens at once;
- "direct": that upstream called by the benchmark's clients;
- "litellm": LiteLLM's proxy in front of it (``--litellm``: its ``litellm``
  executable, installed apart from the project, e.g. in /tmp/litellm-venv;
  skipped when absent);
- per mode, the platform as ``make run`` starts it (run_platform: the ASGI
  server processes, the scheduler, one worker with --slots slots), on a fresh
  storage (embedded: SQLite + SqliteHuey in a temporary DATA_DIR; distributed:
  a new PostgreSQL database and a queue name of its own on Redis), with a
  tenant on unlimited quotas and the model "bench-upstream" served by the
  openai_compatible adapter from the upstream. Clients use the platform's /v1
  (OpenAI's API), or POST /api/v1/tasks plus the task's WebSocket stream where
  /v1 does not answer. Every request is a durable, encrypted, scheduled task.

For each target and each --concurrency C: C clients in a closed loop, each
sending a streamed chat completion and reading it to its end, for --seconds
(after --warmup seconds not counted). Reported: completed requests/s, time to
first token (request sent → first text received) p50/p99, total time p50/p99,
errors (a status other than 200, a broken or short stream), and the CPU each
process spent per completed request (/proc/PID/stat; the shared PostgreSQL and
Redis servers included in distributed mode, other users' work on them too).
Ratios are against "direct" of the same run (the mean of its runs before and
after the platform's). Then, per platform mode: --stages requests one after
another, each split where its task's own timestamps fall (row built,
dispatched, claimed, first chunk written to the log), the p50 of each stage
printed; and after --idle seconds without a request, one request: its time
to first token against the warm 1-client p50, and the direct upstream's after
as long a quiet spell (its baseline: waking idle processes costs milliseconds
on a VM, whatever they run).

--profile DIR: per mode, one more run at the highest concurrency with py-spy
sampling each platform process (--gil: Python's own CPU); the functions
holding most samples are printed (that run's figures are not reported).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import httpx  # noqa: E402
from throughput import (  # noqa: E402
    CpuClock,
    Sampler,
    _forget_redis_keys,
    children_of,
    free_port,
    percentile,
    print_profile,
    shared_servers,
)

from tests.e2e.harness import manage  # noqa: E402
from tests.support import fresh_postgres_database  # noqa: E402

HOST = "127.0.0.1"
MODEL = "bench-upstream"
START_TIMEOUT = 300.0  # the first start builds the tiny model
DEFAULT_LITELLM = "/tmp/litellm-venv/bin/litellm"


# --- what a client measures ---------------------------------------------------------------


@dataclass
class Target:
    name: str
    base_url: str  # …/v1 for OpenAI's API; the server's root for the tasks API
    api_key: str = "bench"
    model: str = "zero"
    tasks_api: bool = False  # POST /api/v1/tasks + the WebSocket stream instead of /v1
    pids: dict[str, int] = field(default_factory=dict)  # the processes whose CPU is counted
    env: dict[str, str] = field(default_factory=dict)  # a platform's environment (its storage)


@dataclass
class Sample:
    ttft: float | None
    total: float
    ok: bool


async def _one_v1(client: httpx.AsyncClient, target: Target, tokens: int) -> Sample:
    began = time.perf_counter()
    first = None
    received = 0
    done = False
    body = {"model": target.model, "messages": [{"role": "user", "content": "say something"}],
            "max_tokens": tokens, "stream": True}
    async with client.stream("POST", f"{target.base_url}/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {target.api_key}"}) as response:
        if response.status_code != 200:
            await response.aread()
            return Sample(None, time.perf_counter() - began, False)
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            for choice in json.loads(data).get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    received += 1
                    if first is None:
                        first = time.perf_counter()
    total = time.perf_counter() - began
    return Sample(None if first is None else first - began, total, done and received > 0)


async def _one_tasks_api(client: httpx.AsyncClient, target: Target, tokens: int) -> Sample:
    import websockets

    began = time.perf_counter()
    headers = {"Authorization": f"Bearer {target.api_key}"}
    created = await client.post(f"{target.base_url}/api/v1/tasks", headers=headers,
                                json={"model": target.model, "prompt": "say something", "max_tokens": tokens})
    if created.status_code != 201:
        return Sample(None, time.perf_counter() - began, False)
    ws_url = target.base_url.replace("http://", "ws://") + f"/ws/tasks/{created.json()['id']}/"
    first = None
    status = None
    async with websockets.connect(ws_url, additional_headers=headers) as socket:
        async for raw in socket:
            message = json.loads(raw)
            if message["type"] == "chunk" and first is None:
                first = time.perf_counter()
            elif message["type"] == "done":
                status = message["status"]
                break
    total = time.perf_counter() - began
    return Sample(None if first is None else first - began, total, status == "succeeded")


async def closed_loop(target: Target, concurrency: int, seconds: float, warmup: float, tokens: int) -> list[Sample]:
    """``concurrency`` clients, each sending its next request when the last one ended."""
    one = _one_tasks_api if target.tasks_api else _one_v1
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    samples: list[Sample] = []
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        start = time.perf_counter()
        counted_from, end = start + warmup, start + warmup + seconds

        async def loop() -> None:
            while (now := time.perf_counter()) < end:
                try:
                    sample = await one(client, target, tokens)
                except Exception:  # a broken connection is an error, not the end of the run
                    sample = Sample(None, time.perf_counter() - now, False)
                if now >= counted_from:
                    samples.append(sample)

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return samples


def measure(target: Target, concurrency: int, args: argparse.Namespace) -> dict[str, object]:
    pids = {**target.pids, "client (this benchmark)": os.getpid()}
    before = {name: _cpu(name, pid) for name, pid in pids.items()}
    wall = time.perf_counter()
    samples = asyncio.run(closed_loop(target, concurrency, args.seconds, args.warmup, args.tokens))
    wall = time.perf_counter() - wall
    after = {name: _cpu(name, pid) for name, pid in pids.items()}
    ok = [s for s in samples if s.ok]
    ttfts = [s.ttft * 1000 for s in ok if s.ttft is not None]
    totals = [s.total * 1000 for s in ok]
    completed = max(1, len(ok))
    # The warm-up's CPU is in the counters too: scale it out by time.
    share = args.seconds / max(wall, 1e-9)
    return {
        "target": target.name,
        "concurrency": concurrency,
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "requests_per_s": round(len(ok) / args.seconds, 1),
        "ttft_p50_ms": round(percentile(ttfts, 50), 2),
        "ttft_p99_ms": round(percentile(ttfts, 99), 2),
        "total_p50_ms": round(percentile(totals, 50), 2),
        "total_p99_ms": round(percentile(totals, 99), 2),
        "cpu_ms_per_request": {
            name: round((after[name] - before[name]) * share * 1000 / completed, 2) for name in pids
        },
    }


def _cpu(name: str, pid: int) -> float:
    if "server, shared" in name and "postgres" in name:
        return CpuClock.server(pid)  # a process per connection: the postmaster's children count
    # LiteLLM's proxy may run its server in a child process.
    return CpuClock.of(pid) + (sum(CpuClock.of(child) for child in children_of(pid)) if name == "litellm" else 0.0)


# --- processes ------------------------------------------------------------------------------


class Process:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:] if self.log.exists() else []
        return f"--- {self.name} ({self.log})\n" + "\n".join(text)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def wait_http(process: Process, url: str, ok=(200,), headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited during start-up:\n{process.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, headers=headers, timeout=5).status_code in ok:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} never answered {url}:\n{process.tail()}")
        time.sleep(0.3)


def base_env() -> dict[str, str]:
    drop = ("DATABASE_URL", "REDIS_URL", "LLMAGENTOS_PROFILE", "SECRET_KEY", "MASTER_KEYS", "DEBUG", "DATA_DIR")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def upstream(workdir: Path, tokens: int) -> Iterator[Target]:
    port = free_port()
    process = Process("upstream", [sys.executable, "-m", "uvicorn", "bench.zero_upstream:app", "--host", HOST,
                                   "--port", str(port), "--no-access-log", "--lifespan", "off"],
                      base_env() | {"ZERO_UPSTREAM_TOKENS": str(tokens)}, workdir)
    try:
        wait_http(process, f"http://{HOST}:{port}/v1/models")
        yield Target("direct", f"http://{HOST}:{port}/v1", pids={"upstream": process.popen.pid})
    finally:
        process.stop()


@contextlib.contextmanager
def litellm_proxy(executable: str, upstream_url: str, workdir: Path) -> Iterator[Target]:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/zero\n"
        f"      api_base: {upstream_url}\n"
        "      api_key: unused\n"
    )
    # A master key (it refuses to start without one); with no database, only it authenticates.
    master_key = f"sk-bench-{uuid.uuid4().hex}"
    env = base_env() | {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                        "DISABLE_SCHEMA_UPDATE": "True", "LITELLM_MASTER_KEY": master_key}
    process = Process("litellm", [executable, "--config", str(config), "--host", HOST, "--port", str(port),
                                  "--num_workers", "1", "--telemetry", "False"], env, workdir)
    try:
        wait_http(process, f"http://{HOST}:{port}/health/liveliness")
        yield Target("litellm", f"http://{HOST}:{port}/v1", api_key=master_key, model=MODEL,
                     pids={"litellm": process.popen.pid, "upstream": 0})
    finally:
        process.stop()


@contextlib.contextmanager
def platform(mode: str, upstream_url: str, args: argparse.Namespace, workdir: Path) -> Iterator[Target]:
    """run_platform on fresh storage, with the upstream registered as MODEL."""
    with contextlib.ExitStack() as cleanup:
        data_dir = workdir / f"data-{mode}"
        data_dir.mkdir()
        prefix = f"bench-gw-{uuid.uuid4().hex[:8]}"
        port = free_port()
        env = base_env() | {
            "DATA_DIR": str(data_dir), "HOST": HOST, "PORT": str(port), "HUEY_NAME": prefix,
            "LOG_LEVEL": "WARNING", "WORKER_THREADS": str(args.slots), "WORKER_NAME": f"bench-{mode}",
        }
        if args.servers:
            env["SERVER_PROCESSES"] = str(args.servers)
        if mode == "distributed":
            env["DATABASE_URL"] = cleanup.enter_context(fresh_postgres_database(args.database_url))
            env["REDIS_URL"] = args.redis_url
            cleanup.callback(_forget_redis_keys, args.redis_url, prefix)
        manage(env, "migrate", "--no-input", "-v", "0")
        slug = manage(env, "create_tenant", "Gateway Bench")
        api_key = manage(env, "create_api_key", slug)
        manage(env, "set_plan", slug, *(arg for option in ("--rpm", "--tpm", "--budget-tokens", "--max-running",
                                                           "--max-queued") for arg in (option, "unlimited")))
        _add_upstream_model(env, upstream_url)
        process = Process(f"platform-{mode}", [sys.executable, "manage.py", "run_platform"], env, workdir)
        cleanup.callback(process.stop)
        root = f"http://{HOST}:{port}"
        wait_http(process, f"{root}/readyz")
        headers = {"Authorization": f"Bearer {api_key}"}
        # /v1 where it answers (the gateway), else (or with --api tasks) the tasks API and the WebSocket stream.
        tasks_api = args.api == "tasks" or httpx.get(f"{root}/v1/models", headers=headers, timeout=10).is_error
        target = Target(mode, root if tasks_api else f"{root}/v1", api_key=api_key, model=MODEL,
                        tasks_api=tasks_api, env=env)
        _wait_for_worker(target)
        target.pids = _platform_pids(process.popen.pid)
        if mode == "distributed":
            storage_servers = _shared_servers(env)
            target.pids.update(storage_servers)
        yield target


def _add_upstream_model(env: dict[str, str], upstream_url: str) -> None:
    config = json.dumps({"base_url": upstream_url, "model": "zero"})
    try:
        manage(env, "add_model", MODEL, "--adapter", "openai_compatible", "--public", "--config", config)
    except AssertionError:  # a tree from before `add_model` (a "before" run): as the admin would
        manage(env, "shell", "-c", "from apps.catalog.models import LLMModel; import json; "
               f"LLMModel.objects.create(name={MODEL!r}, adapter='openai_compatible', is_public=True, "
               f"adapter_config=json.loads({config!r}))")


def _wait_for_worker(target: Target) -> None:
    """Until a request goes through (the worker has registered and picked the model up)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        samples = asyncio.run(closed_loop(target, 1, 0.5, 0, 4))
        if any(s.ok for s in samples):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no request through {target.name} went through")


def _platform_pids(supervisor: int) -> dict[str, int]:
    found: dict[str, int] = {}
    servers = 0
    for pid in children_of(supervisor):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"apps.runtime.serve" in command or b"uvicorn" in command:
            servers += 1
            found[f"server-{servers}"] = pid
        else:
            found["scheduler" if b"run_scheduler" in command else "worker" if b"run_worker" in command
                  else f"child-{pid}"] = pid
    return found


def _shared_servers(env: dict[str, str]) -> dict[str, int]:
    @dataclass
    class _Storage:  # what throughput.shared_servers reads
        db: str
        queue: str
        postgres: bool = True

    return shared_servers(_Storage(env["DATABASE_URL"], env["REDIS_URL"]))  # type: ignore[arg-type]


STAGES = (
    ("request → task row built", "server: HTTP, key, model, admission"),
    ("→ dispatched", "commit, wake-up, dispatch round"),
    ("→ claimed", "queue wake-up, worker takes it, claim"),
    ("→ first chunk logged", "upstream request, first token, encryption, write"),
    ("→ client has it", "wake-up, hub read, decryption, SSE frame"),
)


def stages(target: Target, count: int, tokens: int) -> list[dict[str, float]]:
    """Where the first token's time goes: ``count`` requests one after another, each
    split at the task's own timestamps (built, dispatched, claimed: the task row;
    first chunk written: the log's row or Redis entry). One host, one clock."""
    import psycopg
    import redis

    async def one(client: httpx.AsyncClient) -> tuple[str, float, float]:
        body = {"model": target.model, "messages": [{"role": "user", "content": "x"}], "max_tokens": tokens,
                "stream": True}
        began, first = time.time(), 0.0
        async with client.stream("POST", f"{target.base_url}/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {target.api_key}"}) as response:
            task_id = response.headers["X-Task-ID"]
            async for line in response.aiter_lines():
                if not first and line.startswith("data: ") and '"content": "tok' in line.replace('":"', '": "'):
                    first = time.time()
        return task_id, began, first

    async def run() -> list[tuple[str, float, float]]:
        async with httpx.AsyncClient(timeout=60) as client:
            return [await one(client) for _ in range(count)]

    rows = []
    for task_id, began, first in asyncio.run(run()):
        if "DATABASE_URL" in target.env:
            with psycopg.connect(target.env["DATABASE_URL"]) as conn:
                built, dispatched, claimed = conn.execute(
                    "SELECT created_at, dispatched_at, started_at FROM tasks_task WHERE id = %s", [task_id]
                ).fetchone()
            entries = redis.Redis.from_url(target.env["REDIS_URL"]).xrange(
                f"{target.env['HUEY_NAME']}:stream:{task_id}", count=1
            )
            logged = int(entries[0][0].split(b"-")[0]) / 1000
            times = [built.timestamp(), dispatched.timestamp(), claimed.timestamp(), logged]
        else:
            db = Path(target.env["DATA_DIR"]) / "llmagentos.sqlite3"
            with contextlib.closing(sqlite3.connect(db)) as conn:
                plain = task_id.replace("-", "")
                values = conn.execute("SELECT created_at, dispatched_at, started_at FROM tasks_task WHERE id = ?",
                                      [plain]).fetchone()
                values += conn.execute("SELECT min(created_at) FROM streaming_streamevent WHERE task_id = ? "
                                       "AND kind = 'chunk'", [plain]).fetchone()
            times = [datetime.fromisoformat(v).replace(tzinfo=UTC).timestamp() for v in values]
        points = [began, *times, first]
        rows.append({name: (b - a) * 1000 for (name, _), a, b in zip(STAGES, points[:-1], points[1:], strict=True)})
    return rows


def idle_probe(target: Target, idle: float, tokens: int) -> float | None:
    """TTFT (ms) of one request after ``idle`` seconds with none (on a new connection, as
    a client that went quiet would open one)."""
    time.sleep(idle)

    async def once() -> Sample:
        async with httpx.AsyncClient(timeout=60) as client:
            return await (_one_tasks_api if target.tasks_api else _one_v1)(client, target, tokens)

    sample = asyncio.run(once())
    return None if sample.ttft is None or not sample.ok else round(sample.ttft * 1000, 2)


# --- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, object]:
    results: list[dict[str, object]] = []
    idle: dict[str, dict[str, float | None]] = {}
    breakdown: dict[str, dict[str, float]] = {}
    profiles: dict[str, str] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp, upstream(Path(tmp), args.tokens) as direct:
        workdir = Path(tmp)
        upstream_pid = direct.pids["upstream"]

        def report(result: dict[str, object]) -> None:
            results.append(result)
            print(json.dumps(result), flush=True)

        for concurrency in args.concurrency:
            report(measure(direct, concurrency, args) | {"phase": "before"})
        if args.litellm and Path(args.litellm).exists():
            with litellm_proxy(args.litellm, direct.base_url, workdir) as proxy:
                proxy.pids["upstream"] = upstream_pid
                for concurrency in args.concurrency:
                    report(measure(proxy, concurrency, args))
        else:
            print(f"LiteLLM's proxy not run: no executable at {args.litellm!r}", file=sys.stderr)
        for mode in args.modes:
            with platform(mode, direct.base_url, args, workdir) as target:
                target.pids["upstream"] = upstream_pid
                for concurrency in args.concurrency:
                    report(measure(target, concurrency, args))
                if args.stages and not target.tasks_api:
                    split = stages(target, args.stages, args.tokens)[args.stages // 5:]  # the first: warming up
                    breakdown[mode] = {name: round(percentile([r[name] for r in split], 50), 2) for name, _ in STAGES}
                    print(json.dumps({"stages": mode, **breakdown[mode]}), flush=True)
                if args.idle:
                    warm = next(r for r in results if r["target"] == mode and r["concurrency"] == min(args.concurrency))
                    after_idle = idle_probe(target, args.idle, args.tokens)
                    # The baseline: the direct upstream after as long a quiet spell. Waking idle
                    # processes (and vCPUs) costs milliseconds on a VM, whatever they run.
                    direct_after_idle = idle_probe(direct, args.idle, args.tokens)
                    direct_warm = [r["ttft_p50_ms"] for r in results
                                   if r["target"] == "direct" and r["concurrency"] == min(args.concurrency)]
                    idle[mode] = {"idle_s": args.idle, "ttft_ms": after_idle, "warm_p50_ms": warm["ttft_p50_ms"],
                                  "direct_ttft_ms": direct_after_idle,
                                  "direct_warm_p50_ms": round(sum(direct_warm) / len(direct_warm), 2)}
                    print(json.dumps({"idle": mode, **idle[mode]}), flush=True)
                if args.profile:
                    into = Path(args.profile) / mode
                    sampler = Sampler({k: v for k, v in target.pids.items() if k.startswith(("server", "scheduler",
                                                                                         "worker"))}, into)
                    try:
                        asyncio.run(closed_loop(target, max(args.concurrency), args.seconds, 0, args.tokens))
                    finally:
                        profiles.update({f"{mode}/{k}": str(v) for k, v in sampler.stop().items()})
        for concurrency in args.concurrency:
            report(measure(direct, concurrency, args) | {"phase": "after"})
    if profiles:
        print_profile(profiles, 15)
    return {"load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "results": results, "idle": idle, "stages": breakdown, "args": {k: v for k, v in vars(args).items()}}


def print_table(report: dict[str, object]) -> None:
    results = report["results"]
    directs = {}
    for concurrency in {r["concurrency"] for r in results}:
        runs = [r for r in results if r["target"] == "direct" and r["concurrency"] == concurrency]
        directs[concurrency] = {key: sum(r[key] for r in runs) / len(runs)
                                for key in ("ttft_p50_ms", "ttft_p99_ms", "requests_per_s")}
    print(f"\nload average {report['load_before']} → {report['load_after']}")
    print("| target | clients | req/s | ÷ direct | TTFT p50 ms | added p50 | TTFT p99 ms | added p99 "
          "| total p50 ms | errors | CPU ms/request by process |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        base = directs[r["concurrency"]]
        cpu = ", ".join(f"{name} {ms}" for name, ms in r["cpu_ms_per_request"].items())
        label = r["target"] + (f" ({r['phase']})" if "phase" in r else "")
        print(f"| {label} | {r['concurrency']} | {r['requests_per_s']} | "
              f"{r['requests_per_s'] / max(base['requests_per_s'], 1e-9):.2f}× | {r['ttft_p50_ms']} | "
              f"{r['ttft_p50_ms'] - base['ttft_p50_ms']:+.1f} | {r['ttft_p99_ms']} | "
              f"{r['ttft_p99_ms'] - base['ttft_p99_ms']:+.1f} | {r['total_p50_ms']} | {r['errors']} | {cpu} |")
    if report["stages"]:
        print("\nwhere the first token's time goes, 1 client, p50 of each stage (ms):")
        print("| stage | what | " + " | ".join(report["stages"]) + " |")
        print("|---|---|" + "---|" * len(report["stages"]))
        for name, what in STAGES:
            print(f"| {name} | {what} | " + " | ".join(str(s[name]) for s in report["stages"].values()) + " |")
    for mode, probe in report["idle"].items():
        ratio = (probe["ttft_ms"] or float("nan")) / max(probe["warm_p50_ms"], 1e-9)
        print(f"{mode}: first request after {probe['idle_s']} s idle: TTFT {probe['ttft_ms']} ms "
              f"({ratio:.2f}× the warm 1-client p50 of {probe['warm_p50_ms']} ms)")
        direct_idle, direct_warm = probe.get("direct_ttft_ms"), probe.get("direct_warm_p50_ms")
        if probe["ttft_ms"] is not None and direct_idle is not None and direct_warm is not None:
            added_idle = probe["ttft_ms"] - direct_idle
            added_warm = probe["warm_p50_ms"] - direct_warm
            print(f"    the direct upstream after as long idle: {direct_idle} ms ({direct_idle / direct_warm:.2f}× its "
                  f"warm p50 of {direct_warm} ms); added by the platform: {added_idle:+.1f} ms after idle, "
                  f"{added_warm:+.1f} ms warm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="embedded,distributed", type=lambda v: [m for m in v.split(",") if m])
    parser.add_argument("--concurrency", default="1,20", type=lambda v: [int(c) for c in v.split(",")])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--idle", type=float, default=60.0, help="0: no idle probe")
    parser.add_argument("--stages", type=int, default=100, help="requests split into stages (0: none)")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--slots", type=int, default=32, help="the platform worker's slots")
    parser.add_argument("--servers", type=int, default=0, help="SERVER_PROCESSES (0: the platform's default)")
    parser.add_argument("--litellm", default=DEFAULT_LITELLM, help="LiteLLM's executable, or 'none'")
    parser.add_argument("--api", choices=("v1", "tasks"), default="v1",
                        help="the platform's /v1 (where it answers), or POST /api/v1/tasks + the WebSocket stream")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL")
                        or "postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15")
    parser.add_argument("--profile", help="a directory for py-spy's samples")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    if args.litellm == "none":
        args.litellm = ""
    report = run(args)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
