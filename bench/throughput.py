"""End-to-end throughput: tasks per second through the real stack, against raw
Huey on the same storage, in the same run.

    .venv/bin/python bench/throughput.py [--modes distributed,embedded] [--tasks 2000] [--quick]
        [--slots 8] [--servers 1] [--concurrency 16] [--backend-conn-max-age SECONDS]
        [--profile DIR] [--keep-logs DIR] [--json PATH]

Per mode, on one fresh storage (distributed: a new PostgreSQL database and a
queue name of its own on Redis, 127.0.0.1; embedded: a temporary DATA_DIR
holding the SQLite database and the SqliteHuey file):

1. raw Huey: M no-op jobs enqueued, then drained by a Huey consumer with
   --slots threads (bench/huey_baseline.py); tasks/s = M / drain time.
2. Huey + the same database writes: the same, each job inserting a row,
   updating it to running, then to succeeded with a small payload.
3. the platform: distributed: --servers uvicorn processes, run_scheduler and
   one run_worker with --slots slots; embedded: run_platform (its worker has
   WORKER_THREADS = --slots). A tenant with unlimited quotas submits M tasks
   over HTTP, --concurrency requests at once, to an echo model at full speed
   (words_per_second 0); tasks/s = M / (first submit -> last finished_at
   stored), read from the database.

The baselines run before and after the platform; their figure is the mean of
the two (both are printed: the spread says how noisy the machine was).

Besides tasks/s it prints where a task's time goes (waiting for a slot and the
dispatcher, on the model's queue, running; the mean number of slots kept
filled) and the CPU each process spent per task, the shared PostgreSQL and
Redis servers included (distributed; other users' work on them counts too).

With --profile DIR, one more platform run samples each platform process with
py-spy (--gil: only the thread running Python code, so waits on PostgreSQL or
Redis are not counted); the collapsed stacks go to DIR and the functions
holding most samples are printed. That run's figures are not the ones
reported (sampling costs CPU too). --backend-conn-max-age N runs the scheduler
and the worker with persistent database connections (DB_CONN_MAX_AGE=N) instead
of the settings' connection pool; DB_POOL_MAX_SIZE=0 in the environment turns the
pool off for every platform process, to measure what opening a connection per
request and per task costs.

Only 127.0.0.1 is used; everything started is stopped, and the database, the
queues and the temporary files are removed, on success or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import httpx  # noqa: E402
from huey_baseline import Jobs, Rows, open_huey  # noqa: E402

from tests.e2e.harness import add_echo_model, manage  # noqa: E402
from tests.support import fresh_postgres_database  # noqa: E402

HOST = "127.0.0.1"
MODEL = "bench-echo"
PROMPT_WORDS = 8  # each task echoes this many words back
START_TIMEOUT = 120.0
POLL_SECONDS = 0.2
TERMINAL = ("succeeded", "failed", "cancelled")
# Frames py-spy reports for code of this repository (its paths are relative to sys.path).
OWN_CODE = ("apps/", "llmagentos/", "plugins/")


# --- storage -----------------------------------------------------------------------------


@dataclass
class Storage:
    """One mode's storage and the environment of every platform process on it."""

    mode: str
    workdir: Path
    env: dict[str, str]
    queue: str  # where Huey keeps its queues: redis://… or the SqliteHuey file
    db: str  # postgres://… or the SQLite file
    api_key: str = ""

    @property
    def postgres(self) -> bool:
        return self.mode == "distributed"

    def query(self, sql: str) -> list[tuple]:
        """A read of the platform's database from the benchmark (a short connection)."""
        if self.postgres:
            import psycopg

            with psycopg.connect(self.db) as conn:
                return conn.execute(sql).fetchall()
        with contextlib.closing(sqlite3.connect(self.db, timeout=30)) as conn:
            return conn.execute(sql).fetchall()


@contextlib.contextmanager
def prepared_storage(mode: str, database_url: str, redis_url: str) -> Iterator[Storage]:
    """Fresh storage, migrated, with a tenant on unlimited quotas and an echo model at full speed."""
    with tempfile.TemporaryDirectory(prefix=f"throughput-{mode}-") as tmp, contextlib.ExitStack() as cleanup:
        workdir = Path(tmp)
        data_dir = workdir / "data"
        data_dir.mkdir()
        prefix = f"bench-tp-{uuid.uuid4().hex[:8]}"
        env = {
            k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "LLMAGENTOS_PROFILE", "SECRET_KEY", "MASTER_KEYS", "DEBUG")
        }
        env.update(
            DATA_DIR=str(data_dir),
            HOST=HOST,
            HUEY_NAME=prefix,
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="WARNING",  # a log line per task would be part of what is measured
            LLMAGENTOS_PLUGINS="plugins.echo",
        )
        if mode == "distributed":
            env["DATABASE_URL"] = cleanup.enter_context(fresh_postgres_database(database_url))
            env["REDIS_URL"] = redis_url
            cleanup.callback(_forget_redis_keys, redis_url, prefix)
            storage = Storage(mode, workdir, env, queue=redis_url, db=env["DATABASE_URL"])
        else:
            storage = Storage(mode, workdir, env, queue=str(data_dir / "huey.sqlite3"),
                              db=str(data_dir / "llmagentos.sqlite3"))
        manage(env, "migrate", "--no-input", "-v", "0")
        slug = manage(env, "create_tenant", "Throughput Bench")
        storage.api_key = manage(env, "create_api_key", slug)
        manage(env, "set_plan", slug, *(arg for option in ("--rpm", "--tpm", "--budget-tokens", "--max-running",
                                                           "--max-queued") for arg in (option, "unlimited")))
        add_echo_model(env, MODEL, 0)  # 0: as fast as the adapter can yield
        yield storage


def _forget_redis_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


# --- the Huey baselines ----------------------------------------------------------------------


def huey_baseline(storage: Storage, kind: str, tasks: int, threads: int, timeout: float) -> dict[str, object]:
    """Enqueue ``tasks`` jobs, then drain them with a consumer process of ``threads`` threads."""
    name = f"{storage.env['HUEY_NAME']}.baseline"
    rows = Rows(storage.db) if kind == "record" else None
    jobs = Jobs(open_huey(storage.queue, name), rows)
    try:
        if rows is not None:
            rows.create()
        enqueue_seconds = jobs.enqueue(kind, tasks)
        command = [sys.executable, str(REPO_ROOT / "bench" / "huey_baseline.py"), "--queue", storage.queue,
                   "--name", name, "--threads", str(threads), "--expect", str(tasks), "--timeout", str(timeout)]
        if rows is not None:
            command += ["--db", storage.db]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 60)
        if done.returncode != 0:
            raise RuntimeError(f"huey_baseline.py failed:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        stored = rows.count("succeeded") if rows is not None else None
    finally:
        jobs.huey.flush()
        if rows is not None:
            rows.drop()
            rows.close()
    return {
        "tasks_per_s": round(result["ended"] / result["seconds"], 1),
        "ended": result["ended"],
        "errors": result["errors"],
        "rows_succeeded": stored,
        "enqueue_per_s": round(tasks / enqueue_seconds, 1),
    }


# --- the platform --------------------------------------------------------------------------------


class CpuClock:
    """CPU seconds (user + system) of a set of processes, from /proc."""

    TICK = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _stat(pid: int) -> list[str]:
        """/proc/PID/stat after the command name: [state, ppid, …]; [] once the process is gone."""
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return []

    @classmethod
    def of(cls, pid: int) -> float:
        fields = cls._stat(pid)
        return (int(fields[11]) + int(fields[12])) / cls.TICK if fields else 0.0

    @classmethod
    def server(cls, pid: int) -> float:
        """A server with a process per connection (PostgreSQL): its own CPU, its
        ended children's (cutime + cstime) and its live children's."""
        fields = cls._stat(pid)
        if not fields:
            return 0.0
        reaped = (int(fields[13]) + int(fields[14])) / cls.TICK
        return cls.of(pid) + reaped + sum(cls.of(child) for child in children_of(pid))

    @classmethod
    def parent(cls, pid: int) -> int:
        return int(cls._stat(pid)[1])

    @staticmethod
    def machine() -> tuple[int, int]:
        """(busy, total) jiffies of the whole machine."""
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)


def shared_servers(storage: Storage) -> dict[str, int]:
    """The PostgreSQL and Redis servers' pids (distributed mode): other users' work
    on them counts too, so their figures are an upper bound."""
    if not storage.postgres:
        return {}
    import psycopg
    import redis

    # The postmaster is the parent of our own backend; read it while that backend
    # lives (it exits with its connection, and /proc forgets it at once).
    with psycopg.connect(storage.db) as conn:
        postmaster = CpuClock.parent(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    return {
        "postgres (server, shared)": postmaster,
        "redis (server, shared)": int(redis.Redis.from_url(storage.queue).info("server")["process_id"]),
    }


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Platform:
    """The platform's processes on one storage, started and stopped together."""

    def __init__(self, storage: Storage, slots: int, servers: int, backend_conn_max_age: str | None = None) -> None:
        self.storage = storage
        self.slots = slots
        self.backend_conn_max_age = backend_conn_max_age
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports = [free_port() for _ in range(servers if storage.mode == "distributed" else 1)]

    def _spawn(self, name: str, command: list[str], env: dict[str, str], stdout=subprocess.DEVNULL) -> subprocess.Popen:
        log = open(self.storage.workdir / f"{name}.log", "ab")
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=stdout, stderr=log)
        log.close()
        self.processes[name] = process
        return process

    def start(self) -> None:
        env = dict(self.storage.env)
        manage_py = [sys.executable, "manage.py"]
        if self.storage.mode == "embedded":
            # What `make run` starts: uvicorn, run_scheduler and one managed worker under one supervisor.
            env.update(PORT=str(self.ports[0]), WORKER_THREADS=str(self.slots), WORKER_NAME="bench-embedded")
            self._spawn("run_platform", [*manage_py, "run_platform"], env)
        else:
            for index, port in enumerate(self.ports):
                # As run_platform starts its server.
                self._spawn(f"uvicorn-{index}", [sys.executable, "-m", "uvicorn", "llmagentos.asgi:application",
                                                 "--host", HOST, "--port", str(port), "--no-access-log",
                                                 "--timeout-graceful-shutdown", "10"], env)
            if self.backend_conn_max_age is not None:
                # Persistent connections for the scheduler and the worker only: uvicorn
                # runs each request's sync code on a thread of its own, whose
                # connection a later request never reuses.
                env = env | {"DB_CONN_MAX_AGE": self.backend_conn_max_age}
            self._spawn("scheduler", [*manage_py, "run_scheduler"], env)
            self._spawn("worker", [*manage_py, "run_worker", "--name", "bench-worker", "--slots", str(self.slots),
                                   "--models", MODEL], env)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(self.ports)
        while waiting or not self._worker_active():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited during start-up:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError("the platform never became ready:\n"
                                   + "\n".join(self.log_tail(name) for name in self.processes))
            for port in list(waiting):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://{HOST}:{port}/readyz", timeout=2).status_code == 200:
                        waiting.remove(port)
            time.sleep(0.3)

    def _worker_active(self) -> bool:
        with contextlib.suppress(Exception):  # the table may not exist yet (embedded: run_platform migrates)
            return bool(self.storage.query("SELECT count(*) FROM workers_worker WHERE state = 'active'")[0][0])
        return False

    def pids(self) -> dict[str, int]:
        """Each platform process by role (run_platform's children by their command line)."""
        found = {name: process.pid for name, process in self.processes.items() if name != "run_platform"}
        supervisor = self.processes.get("run_platform")
        if supervisor is not None:
            for pid in children_of(supervisor.pid):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                role = ("uvicorn-0" if b"uvicorn" in command else "scheduler" if b"run_scheduler" in command
                        else "worker" if b"run_worker" in command else f"child-{pid}")
                found[role] = pid
            found["run_platform"] = supervisor.pid
        return found

    def stop(self, keep_logs: Path | None = None) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in self.storage.workdir.glob("*.log"):
                shutil.copy(log, keep_logs / log.name)

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.storage.workdir / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return f"--- {name}.log\n" + "\n".join(text)

    def base_urls(self) -> list[str]:
        return [f"http://{HOST}:{port}" for port in self.ports]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Submitted:
    first_at: float = 0.0  # epoch seconds
    last_at: float = 0.0
    latencies: list[float] = field(default_factory=list)
    retries: int = 0


async def submit_all(urls: list[str], api_key: str, tasks: int, concurrency: int, run: str) -> Submitted:
    """POST ``tasks`` tasks, ``concurrency`` at once, spread over the servers in turn."""
    headers = {"Authorization": f"Bearer {api_key}"}
    clients = [httpx.AsyncClient(base_url=url, headers=headers, timeout=120,
                                 limits=httpx.Limits(max_connections=concurrency)) for url in urls]
    gate = asyncio.Semaphore(concurrency)
    result = Submitted()
    words = " ".join(f"w{j}" for j in range(PROMPT_WORDS - 1))

    async def submit(index: int) -> None:
        body = {"model": MODEL, "prompt": f"{run}-{index} {words}", "max_tokens": PROMPT_WORDS}
        client = clients[index % len(clients)]
        async with gate:
            while True:
                began = time.perf_counter()
                response = await client.post("/api/v1/tasks", json=body)
                if response.status_code in (429, 503):  # a limit after all, or a blip: wait as told
                    result.retries += 1
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status_code != 201:
                    raise RuntimeError(f"submission refused: {response.status_code} {response.text[:500]}")
                result.latencies.append(time.perf_counter() - began)
                result.last_at = time.time()
                return

    try:
        result.first_at = time.time()
        await asyncio.gather(*(submit(i) for i in range(tasks)))
    finally:
        for client in clients:
            await client.aclose()
    return result


def epoch(value) -> float:
    """A timestamp from either database as epoch seconds (SQLite: text, UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.timestamp()


def wait_finished(storage: Storage, expected: int, timeout: float) -> dict[str, int]:
    """Poll the task table until ``expected`` tasks have ended (or ``timeout``); counts by state."""
    deadline = time.monotonic() + timeout
    while True:
        counts = dict(storage.query("SELECT state, count(*) FROM tasks_task GROUP BY state"))
        if sum(counts.get(state, 0) for state in TERMINAL) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(POLL_SECONDS)


class Sampler:
    """py-spy recording each platform process while a run lasts (--profile)."""

    def __init__(self, pids: dict[str, int], into: Path) -> None:
        self.into = into
        into.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        self.recorders = {
            name: subprocess.Popen(
                # --gil: only the thread holding the GIL, i.e. Python's CPU time; a thread
                # waiting on PostgreSQL (psycopg's wait) would otherwise count as busy.
                [str(spy), "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--nonblocking", "--gil",
                 "--output", str(into / f"{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items() if name != "run_platform"  # the supervisor only waits
        }

    def stop(self) -> dict[str, Path]:
        for recorder in self.recorders.values():
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for recorder in self.recorders.values():
            try:
                recorder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()
        return {name: self.into / f"{name}.txt" for name in self.recorders if (self.into / f"{name}.txt").exists()}


def platform_run(
    storage: Storage, args: argparse.Namespace, run: str, profile_into: Path | None = None
) -> dict[str, object]:
    platform = Platform(storage, args.slots, args.servers, args.backend_conn_max_age)
    before = dict(storage.query("SELECT state, count(*) FROM tasks_task GROUP BY state"))
    already = sum(before.values())
    try:
        platform.start()
        pids = platform.pids()
        sampler = Sampler(pids, profile_into) if profile_into else None
        servers = shared_servers(storage)
        cpu_before = {name: CpuClock.of(pid) for name, pid in pids.items()}
        cpu_before |= {name: CpuClock.server(pid) for name, pid in servers.items()}
        client_before = time.process_time()
        machine_before = CpuClock.machine()
        submitted = asyncio.run(submit_all(platform.base_urls(), storage.api_key, args.tasks, args.concurrency, run))
        counts = wait_finished(storage, already + args.tasks, args.run_timeout)
        cpu = {name: CpuClock.of(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu |= {name: CpuClock.server(pid) - cpu_before[name] for name, pid in servers.items()}
        cpu["bench client"] = time.process_time() - client_before
        busy, total = CpuClock.machine()
        stacks = sampler.stop() if sampler else {}
    except BaseException:
        for name in platform.processes:
            print(platform.log_tail(name), file=sys.stderr)
        raise
    finally:
        platform.stop(args.keep_logs / storage.mode / run if args.keep_logs else None)
    rows = storage.query(
        "SELECT state, created_at, dispatched_at, started_at, finished_at FROM tasks_task WHERE finished_at IS NOT NULL"
    )
    rows = [row for row in rows if epoch(row[1]) >= submitted.first_at - 1]  # this run's tasks only
    ended = len(rows)
    last_stored = max((epoch(row[4]) for row in rows), default=math.nan)
    seconds = last_stored - submitted.first_at

    def p50_ms(start: int, end: int) -> float:
        """Median time between two of the row's timestamps (both set), in ms."""
        spans = [epoch(row[end]) - epoch(row[start]) for row in rows if row[start] is not None and row[end] is not None]
        return round(percentile(spans, 50) * 1000, 1)

    return {
        "tasks_per_s": round(ended / seconds, 1) if ended else 0.0,
        "ended": ended,
        "succeeded": sum(row[0] == "succeeded" for row in rows),
        "unfinished": args.tasks - ended,
        "seconds": round(seconds, 2),
        "submit_per_s": round(args.tasks / (submitted.last_at - submitted.first_at), 1),
        "submit_p50_ms": round(percentile(submitted.latencies, 50) * 1000, 1),
        "submit_p99_ms": round(percentile(submitted.latencies, 99) * 1000, 1),
        "submit_retries": submitted.retries,
        # Where a task's time goes: waiting for a free slot and the dispatcher,
        # waiting on the model's queue for a worker to take it, running.
        "to_dispatch_p50_ms": p50_ms(1, 2),
        "on_queue_p50_ms": p50_ms(2, 3),
        "running_p50_ms": p50_ms(3, 4),
        # Little's law: the mean number of tasks between dispatch and end, i.e. of
        # the worker's slots the dispatcher kept filled (at most --slots).
        "slots_filled_avg": round(sum(epoch(r[4]) - epoch(r[2]) for r in rows if r[2] is not None) / seconds, 2),
        "cpu_ms_per_task": {name: round(seconds_used * 1000 / max(1, ended), 2) for name, seconds_used in cpu.items()},
        "machine_busy": f"{(busy - machine_before[0]) / max(1, total - machine_before[1]):.0%}",
        "states_at_end": {k: v - before.get(k, 0) for k, v in counts.items()},
        "profiles": {name: str(path) for name, path in stacks.items()},
    }


# --- profile summary -----------------------------------------------------------------------------


def hot_functions(stacks: Path, top: int) -> tuple[int, list[tuple[float, str]], list[tuple[float, str]]]:
    """From py-spy's collapsed stacks: (samples, the repository's functions by
    inclusive share, any functions by self share)."""
    inclusive: Counter = Counter()
    own: Counter = Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            continue
        n = int(count)
        total += n
        names = [frame.rsplit(":", 1)[0] + ")" if ":" in frame else frame for frame in frames.split(";")]
        for name in set(names):  # once per stack: recursion must not count twice
            if any(part in name for part in OWN_CODE):
                inclusive[name] += n
        own[names[-1]] += n

    def shares(counter: Counter) -> list[tuple[float, str]]:
        return [(round(100 * n / max(1, total), 1), name) for name, n in counter.most_common(top)]

    return total, shares(inclusive), shares(own)


def print_profile(profiles: dict[str, str], top: int) -> None:
    for name, path in profiles.items():
        total, inclusive, leaves = hot_functions(Path(path), top)
        print(f"\nprofile of {name} ({total} samples, {path}):")
        print("  repository functions, % of samples in them or their callees:")
        for pct, frame in inclusive:
            print(f"    {pct:5.1f}%  {frame}")
        print("  functions by own samples:")
        for pct, frame in leaves:
            print(f"    {pct:5.1f}%  {frame}")


# --- report ------------------------------------------------------------------------------------


def mode_run(mode: str, args: argparse.Namespace) -> dict[str, object]:
    with prepared_storage(mode, args.database_url, args.redis_url) as storage:
        baselines: dict[str, list[dict[str, object]]] = {"noop": [], "record": []}

        def run_baselines() -> None:
            for kind in baselines:
                print(f"[{mode}] Huey {kind}: {args.tasks} jobs, {args.slots} threads", file=sys.stderr, flush=True)
                baselines[kind].append(huey_baseline(storage, kind, args.tasks, args.slots, args.run_timeout))
                print(f"[{mode}]   {json.dumps(baselines[kind][-1])}", file=sys.stderr, flush=True)

        run_baselines()
        print(f"[{mode}] platform: {args.tasks} tasks, {args.slots} slots", file=sys.stderr, flush=True)
        platform = platform_run(storage, args, "measured")
        print(f"[{mode}]   {json.dumps(platform)}", file=sys.stderr, flush=True)
        run_baselines()
        profiled = None
        if args.profile:
            print(f"[{mode}] platform under py-spy", file=sys.stderr, flush=True)
            profiled = platform_run(storage, args, "profiled", args.profile / mode)
    raw = sum(r["tasks_per_s"] for r in baselines["noop"]) / len(baselines["noop"])
    record = sum(r["tasks_per_s"] for r in baselines["record"]) / len(baselines["record"])
    return {
        "mode": mode,
        "raw_huey": {"tasks_per_s": round(raw, 1), "runs": baselines["noop"]},
        "huey_db_writes": {"tasks_per_s": round(record, 1), "runs": baselines["record"]},
        "platform": platform,
        "ratio_to_raw_huey": round(platform["tasks_per_s"] / raw, 3),
        "profiled_run": profiled,
    }


def print_table(result: dict[str, object]) -> None:
    raw = result["raw_huey"]["tasks_per_s"]
    spread = lambda runs: " / ".join(str(r["tasks_per_s"]) for r in runs)  # noqa: E731
    print(f"\n### {result['mode']}\n")
    print("| run | tasks/s | ratio to raw Huey | note |")
    print("|---|---|---|---|")
    print(f"| raw Huey, no-op | {raw} | 1.00 | before / after: {spread(result['raw_huey']['runs'])} |")
    record = result["huey_db_writes"]["tasks_per_s"]
    print(f"| Huey + same DB writes | {record} | {record / raw:.2f} | before / after: "
          f"{spread(result['huey_db_writes']['runs'])} |")
    platform = result["platform"]
    print(f"| platform (HTTP submit -> result stored) | {platform['tasks_per_s']} | "
          f"{result['ratio_to_raw_huey']:.2f} | {platform['succeeded']}/{platform['ended']} succeeded, "
          f"{platform['unfinished']} unfinished |")
    details = {k: v for k, v in platform.items() if k not in ("tasks_per_s", "profiles")}
    print(f"\nplatform details: {json.dumps(details)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="distributed,embedded", help="distributed and/or embedded")
    parser.add_argument("--tasks", type=int, help="tasks (and Huey jobs) per run (default 2000)")
    parser.add_argument("--quick", action="store_true", help="200 tasks, unless --tasks says otherwise")
    parser.add_argument("--slots", type=int, default=8, help="worker slots = Huey consumer threads")
    parser.add_argument("--servers", type=int, default=1, help="uvicorn processes (distributed mode)")
    parser.add_argument("--backend-conn-max-age", metavar="SECONDS",
                        help="distributed: DB_CONN_MAX_AGE for run_scheduler and run_worker (default: as configured)")
    parser.add_argument("--concurrency", type=int, default=16, help="submissions in flight at once")
    parser.add_argument("--run-timeout", type=float, default=180.0, help="the most one run may take, seconds")
    parser.add_argument("--database-url",
                        default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL server to create the benchmark's own database on")
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--profile", type=Path, help="also profile a platform run with py-spy; stacks go here")
    parser.add_argument("--top", type=int, default=15, help="functions listed per profile")
    parser.add_argument("--keep-logs", type=Path, help="copy the platform processes' logs into this folder")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    if args.tasks is None:
        args.tasks = 200 if args.quick else 2000
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"distributed", "embedded"}:
        parser.error("--modes takes distributed and/or embedded")

    print(f"throughput: {args.tasks} tasks per run, {args.slots} slots, {args.servers} server(s) (distributed), "
          f"{args.concurrency} submissions at once, {os.cpu_count()} CPUs", flush=True)
    results = []
    for mode in modes:
        result = mode_run(mode, args)
        results.append(result)
        print_table(result)
        if result["profiled_run"]:
            print(f"\nprofiled run ({mode}): {result['profiled_run']['tasks_per_s']} tasks/s")
            print_profile(result["profiled_run"]["profiles"], args.top)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
