"""Streaming relay benchmark: N concurrent WebSocket streams through the platform
against the same echo adapter called directly in one process, in the same run.

    .venv/bin/python bench/stream_relay.py [--sizes 100,300,1000] [--modes distributed,embedded]
                                           [--words 100] [--rate 20] [--workers 1] [--quick] [--json PATH]

For each size N and mode it prints, for the direct run and the platform run:
the added latency per word (p50/p99/max), time to first chunk, words/s
relayed and lost words. A figure, never an assertion: this is not a test.

Method (docs/benchmarks.md, "Streaming relay", says the same in prose):

* Direct: one process, N threads, each streams its own prompt from an
  ``EchoAdapter`` at ``--rate`` words/s and notes when each word is yielded.
* Platform: a fresh stack of its own (distributed: a new PostgreSQL database
  and a Redis key prefix on 127.0.0.1; embedded: a temporary SQLite data
  dir), uvicorn and ``run_scheduler`` as ``run_platform`` starts them, and ``--workers`` ``run_worker``
  processes with N slots in all, started and then drained. The N tasks are
  submitted over HTTP, N WebSocket clients (one asyncio loop) connect, and
  only then are the workers undrained, so all N streams start together;
  each chunk's arrival is noted.
* Chunks carry no timestamps (the contract is fixed), so the added latency of
  word i of a stream is its lateness against the adapter's own pace,
      (arrival of the chunk holding word i - arrival of word r) - (i - r) / rate
  where r is the stream's least-late word: word 1 unless the first chunk
  itself was held up (then taking word 1 would count every later word as
  early). That takes out queueing and start-up (when the worker got to the
  task) and leaves what the relay and coalescing add while streaming (plus
  any slowing of the adapter's own loop in a busy worker). The direct run
  gets the same statistic with arrival = yield time; word r (0 by
  definition) is left out of both.
* Time to first chunk: platform, first arrival - the task's started_at (the
  worker's claim, from the database); direct, first yield - thread start.
* Lost: words of the prompt missing from the stream, plus streams whose seqs
  are not 1..n, whose text is not the prompt, or that end without "done".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402

from apps.catalog.adapters import GenerationRequest, TextChunk  # noqa: E402
from plugins.echo.adapter import EchoAdapter  # noqa: E402
from tests.e2e.harness import add_echo_model, manage, stop_process  # noqa: E402
from tests.support import fresh_postgres_database  # noqa: E402

HOST = "127.0.0.1"
START_TIMEOUT = 120.0
# Connections opened at once: the handshake's key and task look-ups run on
# the server's one database thread, so more at once only queue there.
CONNECT_CONCURRENCY = 50
SUBMIT_CONNECTIONS = 8
LAG_PROBE_SECONDS = 0.01
# --quiet-wait: a machine this busy counts as idle.
QUIET_SHARE = 0.25
# The streams start this long after the first client connects at the latest;
# clients still connecting then are counted apart (late_connections).
CONNECT_DEADLINE_SECONDS = 120.0
# Connections beyond one per task: uvicorn, the worker's main and heartbeat threads, the sampler.
# settings.DB_POOL_MAX_SIZE as the stack's processes get it (this file does not import Django).
POOL_SIZE = int(os.environ.get("DB_POOL_MAX_SIZE", "16"))
PLATFORM_PROCESSES = 2  # uvicorn and run_scheduler, besides the workers
CONNECTION_MARGIN = 10


# --- measurements ------------------------------------------------------------------


@dataclass
class Stream:
    """One stream's prompt and what arrived (monotonic seconds)."""

    prompt: str
    start: float = 0.0  # direct: thread start; platform: the worker's claim (wall clock)
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, words in the chunk)
    text: str = ""
    seqs_ok: bool = True
    done_ok: bool = True
    refused: str = ""  # why the WebSocket could not be opened
    opened: bool = False
    late: bool = False  # opened only after the streams started: not in the latency figures

    @property
    def words_expected(self) -> int:
        return len(self.prompt.split())

    def word_arrivals(self) -> list[float]:
        return [at for at, words in self.arrivals for _ in range(words)]

    def faults(self) -> list[str]:
        """What is wrong with the stream as received (nothing for a perfect one)."""
        if self.refused:
            return ["not connected"]
        faults = [] if self.seqs_ok else ["seq not 1..n"]
        if self.text != self.prompt:
            faults.append("text cut short" if self.prompt.startswith(self.text) else "text not the prompt")
        if not self.done_ok:
            faults.append("no done/succeeded/1000")
        return faults

    def lost(self) -> int:
        """Words missing, or the whole stream when it is out of order, altered or unfinished."""
        return self.words_expected if self.faults() else 0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class RunFigures:
    label: str
    streams: int
    added: list[float]  # seconds, one per word after the first
    ttfc: list[float]  # seconds, one per stream
    words: int
    seconds: float  # first arrival to last, over all streams
    lost: int
    concurrent: int  # most streams between their first and last chunk at one time
    faults: dict[str, int] = field(default_factory=dict)  # streams by what was wrong with them
    extra: dict[str, object] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        ms = 1000.0
        return {
            "run": self.label,
            "streams": self.streams,
            "added_p50_ms": round(percentile(self.added, 50) * ms, 2),
            "added_p99_ms": round(percentile(self.added, 99) * ms, 2),
            "added_max_ms": round(max(self.added, default=math.nan) * ms, 2),
            "ttfc_p50_ms": round(percentile(self.ttfc, 50) * ms, 1),
            "ttfc_p99_ms": round(percentile(self.ttfc, 99) * ms, 1),
            "words_per_s": round(self.words / self.seconds) if self.seconds > 0 else 0,
            "lost_words": self.lost,
            "faulty_streams": self.faults,
            "peak_concurrent": self.concurrent,
            **self.extra,
        }


def figures(label: str, streams: list[Stream], interval: float, first_chunk_at: list[float]) -> RunFigures:
    added: list[float] = []
    spans: list[tuple[float, float]] = []
    for stream in streams:
        times = stream.word_arrivals()
        if not times:
            continue
        spans.append((times[0], times[-1]))
        if stream.late:
            continue
        lateness = [at - i * interval for i, at in enumerate(times)]
        # The stream's least-late word is the reference (usually word 1, see the module docstring).
        best = min(range(len(times)), key=lateness.__getitem__)
        added += [late - lateness[best] for i, late in enumerate(lateness) if i != best]
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    seconds = max(b for _, b in spans) - min(a for a, _ in spans) if spans else 0.0
    return RunFigures(
        label=label,
        streams=len(streams),
        added=added,
        ttfc=[first - stream.start for stream, first in zip(streams, first_chunk_at, strict=True)
              if not math.isnan(first) and not stream.late],
        words=sum(len(stream.word_arrivals()) for stream in streams),
        seconds=seconds,
        lost=sum(stream.lost() for stream in streams),
        concurrent=peak,
        faults=dict(Counter(fault for stream in streams for fault in stream.faults())),
    )


def prompts(count: int, words: int) -> list[str]:
    # Distinct words per stream, so a chunk delivered to the wrong stream shows.
    return [" ".join(f"s{i}w{j}" for j in range(words)) for i in range(count)]


# --- direct run ----------------------------------------------------------------------


def direct_run(count: int, words: int, rate: float) -> RunFigures:
    """The adapter alone: ``count`` threads in this process, all starting together."""
    adapter = EchoAdapter({"words_per_second": rate}, {})
    streams = [Stream(prompt) for prompt in prompts(count, words)]
    barrier = threading.Barrier(count)

    def consume(index: int, stream: Stream) -> None:
        request = GenerationRequest(
            request_id=f"direct-{index}", prompt=stream.prompt, messages=None, max_tokens=words
        )
        barrier.wait()
        stream.start = time.monotonic()
        for item in adapter.stream(request):
            if isinstance(item, TextChunk):
                stream.arrivals.append((time.monotonic(), len(item.text.split())))
                stream.text += item.text

    threads = [threading.Thread(target=consume, args=(i, s), daemon=True) for i, s in enumerate(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    firsts = [s.arrivals[0][0] if s.arrivals else math.nan for s in streams]
    return figures("direct", streams, 1.0 / rate, firsts)


# --- the platform ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class CpuMeter:
    """CPU seconds used by named process groups between start() and stop() (from /proc)."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, groups: dict[str, list[int]], by_name: tuple[str, ...] = ("redis-server", "postgres")) -> None:
        self.groups = dict(groups)
        # The servers, by process name (other users' processes too), found again at each
        # sample: PostgreSQL starts and ends a process per connection.
        self.by_name = by_name
        self._before: dict[str, float] = {}
        self._busy_before = (0.0, 0.0)

    @staticmethod
    def _all_pids() -> list[int]:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]

    @staticmethod
    def _comm(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return ""

    def _cpu(self, pid: int, children: bool = False) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        used = int(fields[11]) + int(fields[12])  # utime + stime
        if children:  # + the ended children it reaped (a postmaster's connections)
            used += int(fields[13]) + int(fields[14])
        return used / self.TICK

    @classmethod
    def wait_until_quiet(cls, patience: float, quiet: float = QUIET_SHARE) -> str:
        """Wait up to ``patience`` seconds for the machine (a shared host) to be mostly idle;
        how busy it was in the last second."""
        deadline = time.monotonic() + patience
        while True:
            busy, total = cls._machine()
            time.sleep(1.0)
            busy2, total2 = cls._machine()
            share = (busy2 - busy) / max(1, total2 - total)
            if share <= quiet or time.monotonic() >= deadline:
                return f"{share:.0%}"

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(busy, total) jiffies of the whole machine."""
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    def _sample(self) -> dict[str, float]:
        used = {name: sum(self._cpu(pid) for pid in pids) for name, pids in self.groups.items()}
        pids = self._all_pids()
        for name in self.by_name:
            used[name] = sum(self._cpu(pid, children=True) for pid in pids if self._comm(pid) == name)
        return used

    def start(self) -> None:
        self._before = self._sample()
        self._busy_before = self._machine()
        self._started = time.monotonic()

    def stop(self) -> dict[str, object]:
        after = self._sample()
        busy, total = self._machine()
        elapsed = time.monotonic() - self._started
        used = {name: round(after[name] - self._before.get(name, 0.0), 2) for name in after}
        share = (busy - self._busy_before[0]) / max(1, total - self._busy_before[1])
        return {"cpu_seconds": used, "wall_seconds": round(elapsed, 1), "machine_busy": f"{share:.0%}"}


class ConnectionCounter:
    """The most PostgreSQL connections the benchmark's database had at once (sampled)."""

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionCounter:
        if self.database_url:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(self.database_url)
        with psycopg.connect(**{**info, "dbname": "postgres"}, autocommit=True) as conn:
            while not self._stop.wait(0.25):
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (info["dbname"],)
                ).fetchone()
                self.peak = max(self.peak, count)


class Stack:
    """Everything the platform run needs, on 127.0.0.1, stopped and removed on exit."""

    def __init__(self, mode: str, workdir: Path, redis_url: str, env: dict[str, str]) -> None:
        self.mode = mode
        self.workdir = workdir
        self.redis_url = redis_url
        self.env = env
        self.base_url = f"http://{HOST}:{env['PORT']}"
        self.ws_url = f"ws://{HOST}:{env['PORT']}"
        self.api_key = ""
        self.server: subprocess.Popen | None = None
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    @classmethod
    @contextlib.contextmanager
    def running(cls, mode: str, database_url: str, redis_url: str, sizes: list[int], rate: float,
                keep_logs: Path | None = None) -> Iterator[Stack]:
        with tempfile.TemporaryDirectory(prefix=f"stream-relay-{mode}-") as tmp:
            workdir = Path(tmp)
            env = {
                k: v for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "REDIS_URL", "LLMAGENTOS_PROFILE", "SECRET_KEY", "MASTER_KEYS")
            }
            env.update(
                DATA_DIR=str(workdir / "data"),
                HOST=HOST,
                PORT=str(free_port()),
                HUEY_NAME=f"bench-relay-{uuid.uuid4().hex[:8]}",
                PYTHONUNBUFFERED="1",
                # The workers see the undrain this soon (and confirm the drain).
                WORKER_HEARTBEAT_SECONDS="0.25",
                # Per-task INFO lines are not what is measured here.
                LOG_LEVEL="WARNING",
                LLMAGENTOS_PLUGINS="plugins.echo",
                STREAM_TTL_SECONDS="600",
            )
            with contextlib.ExitStack() as cleanup:
                if mode == "distributed":
                    env["DATABASE_URL"] = cleanup.enter_context(fresh_postgres_database(database_url))
                    env["REDIS_URL"] = redis_url
                    cleanup.callback(cls._forget_redis_keys, redis_url, env["HUEY_NAME"])
                stack = cls(mode, workdir, redis_url, env)
                if keep_logs is not None:
                    cleanup.callback(stack.keep_logs, keep_logs / mode)  # runs after stop
                cleanup.callback(stack.stop)
                stack._prepare(sizes, rate)
                stack._start_server()
                stack._start_scheduler()
                yield stack

    @staticmethod
    def _forget_redis_keys(redis_url: str, prefix: str) -> None:
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])

    def _prepare(self, sizes: list[int], rate: float) -> None:
        manage(self.env, "migrate", "--no-input", "-v", "0")
        slug = manage(self.env, "create_tenant", "Relay Bench")
        self.api_key = manage(self.env, "create_api_key", slug)
        # Plans (when the platform has them) must not throttle the benchmark.
        if "set_plan" in manage(self.env, "help", "--commands").split():
            manage(self.env, "set_plan", slug, "--rpm", "1000000", "--tpm", "1000000000",
                   "--budget-tokens", "1000000000000", "--max-running", "100000", "--max-queued", "100000")
        for size in sizes:
            add_echo_model(self.env, model_name(size), rate)

    def _log(self, name: str):
        return open(self.workdir / f"{name}.log", "ab")

    def _start_server(self) -> None:
        # As run_platform starts it.
        self.server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "llmagentos.asgi:application", "--host", HOST,
             "--port", self.env["PORT"], "--no-access-log", "--timeout-graceful-shutdown", "10"],
            cwd=REPO_ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self._log("server"),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"uvicorn exited:\n{self.log_tail('server')}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn never became ready:\n{self.log_tail('server')}")
            time.sleep(0.2)

    def _start_scheduler(self) -> None:
        # The dispatcher hands ready tasks to workers with free slots (as run_platform runs it).
        self.scheduler = subprocess.Popen(
            [sys.executable, "manage.py", "run_scheduler"],
            cwd=REPO_ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self._log("scheduler"),
        )

    def start_drained_workers(self, size: int, count: int) -> tuple[list[subprocess.Popen], subprocess.Popen]:
        """``count`` run_worker processes serving only this size's model, ``size`` slots in all,
        registered and drained; and a shell that undrains them when sent a line."""
        names = worker_names(size, count)
        started = []
        for k, name in enumerate(names):
            slots = size // count + (1 if k < size % count else 0)
            process = subprocess.Popen(
                [sys.executable, "manage.py", "run_worker", "--name", name, "--slots", str(slots),
                 "--models", model_name(size)],
                cwd=REPO_ROOT, env=self.env, stdout=subprocess.PIPE, stderr=self._log(name), text=True,
            )
            self.workers.append(process)
            started.append(process)
        for name, process in zip(names, started, strict=True):
            ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
            if not ready or not process.stdout.readline().strip():  # a registered worker prints its id
                raise RuntimeError(f"worker {name} did not start:\n{self.log_tail(name)}")
        manage(self.env, "shell", "--no-imports", "-v", "0", "-c", _WORKER_STATE_CHANGE.format(
            names=names, change="drain", state="drained", timeout=START_TIMEOUT))
        # Started now, so that Django's start-up is not in the measured start.
        undrain = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "--no-imports", "-v", "0", "-c",
             "import sys; sys.stdin.readline()\n" + _WORKER_STATE_CHANGE.format(
                 names=names, change="undrain", state="active", timeout=START_TIMEOUT)],
            cwd=REPO_ROOT, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=self._log("undrain"), text=True,
        )
        self.workers.append(undrain)
        return started, undrain

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.workers.clear()

    def stop(self) -> None:
        self.stop_workers()
        for process in (self.scheduler, self.server):
            if process is not None:
                stop_process(process)

    def keep_logs(self, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        for log in self.workdir.glob("*.log"):
            shutil.copy(log, into / log.name)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def task_times(self, size: int) -> dict[str, tuple[float | None, float | None]]:
        """{task id: (started_at, finished_at)} as epoch seconds, for this size's model."""
        code = (
            "import json\n"
            "from apps.tasks.models import Task\n"
            f"rows = Task.objects.filter(model__name={model_name(size)!r})"
            ".values_list('id', 'started_at', 'finished_at')\n"
            "print(json.dumps({str(i): [s and s.timestamp(), f and f.timestamp()] for i, s, f in rows}))\n"
        )
        answer = manage(self.env, "shell", "--no-imports", "-v", "0", "-c", code)
        return {k: tuple(v) for k, v in json.loads(answer).items()}


def spare_connections(database_url: str) -> int:
    """Connections the PostgreSQL server can still open for ordinary users."""
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(database_url)
    with psycopg.connect(**{**info, "dbname": "postgres"}) as conn:
        (spare,) = conn.execute(
            "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
    return spare


# Through the service layer, as an operator's drain; then wait until the workers confirm.
_WORKER_STATE_CHANGE = """
import time
from apps.workers import services
from apps.workers.models import Worker
for name in {names!r}:
    services.{change}(Worker.objects.get(name=name))
deadline = time.monotonic() + {timeout}
while Worker.objects.filter(name__in={names!r}).exclude(state={state!r}).exists():
    assert time.monotonic() < deadline, "the workers never became {state}"
    time.sleep(0.05)
"""


def worker_names(size: int, count: int) -> list[str]:
    return [f"bench-{size}-{k}" for k in range(count)]


def model_name(size: int) -> str:
    # One model per size: its tasks wait on their own queue until that size's workers start.
    return f"bench-echo-{size}"


async def _submit_all(stack: Stack, model: str, texts: list[str], words: int) -> list[str]:
    limits = httpx.Limits(max_connections=SUBMIT_CONNECTIONS)
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, limits=limits, timeout=120) as http:

        async def submit(prompt: str) -> str:
            while True:
                body = {"model": model, "prompt": prompt, "max_tokens": words}
                response = await http.post("/api/v1/tasks", json=body)
                if response.status_code == 429:  # a plan's limit after all: wait as told
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status_code != 201:
                    raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
                return response.json()["id"]

        return list(await asyncio.gather(*(submit(text) for text in texts)))


async def _follow(stack: Stack, task_id: str, stream: Stream, gate: asyncio.Semaphore, opened: list[int],
                  all_opened: asyncio.Event, total: int) -> None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    try:
        async with gate:
            ws = await websockets.connect(f"{stack.ws_url}/ws/tasks/{task_id}/", additional_headers=headers,
                                          open_timeout=START_TIMEOUT, max_size=None)
    except (TimeoutError, OSError, websockets.exceptions.WebSocketException) as exc:
        stream.refused = repr(exc)  # the run goes on; this stream counts as lost
        return
    else:
        stream.opened = True
    finally:
        opened[0] += 1
        if opened[0] == total:
            all_opened.set()
    raw_messages: list[tuple[float, str]] = []
    try:
        async for raw in ws:
            raw_messages.append((time.monotonic(), raw))  # parsed afterwards: the loop stays free to receive
    except websockets.exceptions.ConnectionClosedError:
        pass  # the close code below says so
    finally:
        await ws.close()
    seq = 0
    last_type = ""
    for at, raw in raw_messages:
        message = json.loads(raw)
        last_type = message["type"]
        if last_type == "chunk":
            seq += 1
            stream.seqs_ok &= message["seq"] == seq
            stream.arrivals.append((at, len(message["text"].split())))
            stream.text += message["text"]
        elif last_type == "done":
            stream.done_ok = message["status"] == "succeeded"
    stream.done_ok &= last_type == "done" and ws.close_code == 1000


async def _loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late this loop wakes: what the client itself adds to every arrival."""
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(LAG_PROBE_SECONDS)
        samples.append(time.monotonic() - before - LAG_PROBE_SECONDS)


async def _platform_run(
    stack: Stack, size: int, words: int, rate: float, worker_count: int, quiet_wait: float
) -> RunFigures:
    texts = prompts(size, words)
    background = await asyncio.to_thread(CpuMeter.wait_until_quiet, quiet_wait)
    workers, undrain = await asyncio.to_thread(stack.start_drained_workers, size, worker_count)
    began = time.monotonic()
    task_ids = await _submit_all(stack, model_name(size), texts, words)
    submitted = time.monotonic()
    streams = [Stream(text) for text in texts]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    opened = [0]
    all_opened = asyncio.Event()
    followers = [
        asyncio.create_task(_follow(stack, task_id, stream, gate, opened, all_opened, size))
        for task_id, stream in zip(task_ids, streams, strict=True)
    ]
    try:
        await asyncio.wait_for(all_opened.wait(), CONNECT_DEADLINE_SECONDS)  # every connection made (or refused)
    except TimeoutError:
        pass  # start anyway: a slower client sees a replay first, so its figures are left out
    for stream in streams:
        stream.late = not stream.opened and not stream.refused
    ready = time.monotonic()

    lag: list[float] = []
    lag_stop = asyncio.Event()
    lag_probe = asyncio.create_task(_loop_lag(lag, lag_stop))
    meter = CpuMeter({"uvicorn": [stack.server.pid], "workers": [w.pid for w in workers],
                      "scheduler": [stack.scheduler.pid], "bench client": [os.getpid()]})
    meter.start()
    undrain.stdin.write("go\n")
    undrain.stdin.close()
    budget = START_TIMEOUT + 4 * words / rate
    with ConnectionCounter(stack.env.get("DATABASE_URL")) as connections:
        done, pending = await asyncio.wait(followers, timeout=budget)
    cpu = meter.stop()
    lag_stop.set()
    await lag_probe
    for follower in pending:
        follower.cancel()
    failures = [f.exception() for f in done if f.exception() is not None]
    finished = time.monotonic()
    await asyncio.to_thread(stack.stop_workers)

    times = await asyncio.to_thread(stack.task_times, size)
    wall_offset = time.time() - time.monotonic()
    for task_id, stream in zip(task_ids, streams, strict=True):
        started_at = times.get(task_id, (None, None))[0]
        stream.start = (started_at - wall_offset) if started_at else math.nan
    starts = sorted(s.start for s in streams if not math.isnan(s.start))
    firsts = [s.arrivals[0][0] if s.arrivals else math.nan for s in streams]
    result = figures("platform", streams, 1.0 / rate, firsts)
    # CPU time is what the host's other users cannot distort: the cost of a word, by process.
    per_word = {name: round(seconds / max(1, result.words) * 1e6) for name, seconds in cpu["cpu_seconds"].items()}
    result.extra = {
        "busy_before": background,
        "submit_s": round(submitted - began, 1),
        "connect_s": round(ready - submitted, 1),
        "claim_spread_s": round(starts[-1] - starts[0], 2) if starts else None,
        "stream_phase_s": round(finished - ready, 1),
        "client_lag_p99_ms": round(percentile(lag, 99) * 1000, 1),
        "client_lag_max_ms": round(max(lag, default=math.nan) * 1000, 1),
        "unfinished_streams": len(pending),
        "late_connections": sum(stream.late for stream in streams),
        "peak_db_connections": connections.peak if stack.mode == "distributed" else None,
        "client_errors": [repr(e) for e in failures[:3]] + sorted({s.refused for s in streams if s.refused})[:3],
        **cpu,
        "cpu_us_per_word": per_word,
    }
    return result


# --- report --------------------------------------------------------------------------------


def print_table(mode: str, rows: list[dict[str, object]]) -> None:
    columns = [
        ("streams", "N"), ("run", "run"), ("added_p50_ms", "added p50 ms"), ("added_p99_ms", "added p99 ms"),
        ("added_max_ms", "added max ms"), ("ttfc_p50_ms", "TTFC p50 ms"), ("ttfc_p99_ms", "TTFC p99 ms"),
        ("words_per_s", "words/s"), ("lost_words", "lost words"), ("peak_concurrent", "peak concurrent"),
    ]
    print(f"\n### {mode}\n")
    print("| " + " | ".join(title for _, title in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        if "skipped" in row:
            print(f"| {row['streams']} | platform | skipped: {row['skipped']} |")
            continue
        print("| " + " | ".join(str(row[key]) for key, _ in columns) + " |")
    for row in rows:
        if row["run"] == "platform" and "skipped" not in row:
            details = {k: v for k, v in row.items() if k not in dict(columns)}
            print(f"\nN={row['streams']} platform details: {json.dumps(details)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,300,1000", help="comma-separated stream counts")
    parser.add_argument("--modes", default="distributed,embedded", help="distributed and/or embedded")
    parser.add_argument("--words", type=int, default=200, help="words per stream")
    parser.add_argument("--rate", type=float, default=20.0, help="the echo model's words per second")
    parser.add_argument("--workers", type=int, default=1, help="run_worker processes sharing the slots")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 streams of 20 words")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL server to create the benchmark's own database on")
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--keep-logs", type=Path, help="copy the platform processes' logs into this folder")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                        help=f"on a shared host, wait up to this long for it to be under {QUIET_SHARE:.0%} busy "
                             "before each platform run")
    args = parser.parse_args()
    # SIGTERM (timeout, a CI runner) unwinds like Ctrl-C: everything started is stopped and removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sizes = [20] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    words = 20 if args.quick else args.words
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"distributed", "embedded"}:
        parser.error("--modes takes distributed and/or embedded")

    print(f"stream relay: sizes {sizes}, {words} words per stream at {args.rate:g} words/s, "
          f"{args.workers} worker process(es), {os.cpu_count()} CPUs", flush=True)
    report: dict[str, list[dict[str, object]]] = {}
    for mode in modes:
        rows = report.setdefault(mode, [])
        with Stack.running(mode, args.database_url, args.redis_url, sizes, args.rate, args.keep_logs) as stack:
            for size in sizes:
                print(f"[{mode}] N={size}: direct run", file=sys.stderr, flush=True)
                rows.append(direct_run(size, words, args.rate).row())
                if mode == "distributed":
                    # Each platform process pools at most DB_POOL_MAX_SIZE connections (a worker's
                    # slots give theirs back while streaming); taking a shared server's last
                    # connections would break everyone else's work on it.
                    needed = POOL_SIZE * (PLATFORM_PROCESSES + args.workers) + CONNECTION_MARGIN
                    spare = spare_connections(stack.env["DATABASE_URL"])
                    if spare < needed:
                        print(f"[{mode}] N={size}: SKIPPED, needs {needed} PostgreSQL connections and the server "
                              f"has {spare} spare (--database-url: a server with more)", file=sys.stderr, flush=True)
                        skipped = f"needs {needed} connections, {spare} spare"
                        rows.append({"run": "platform", "streams": size, "skipped": skipped})
                        continue
                print(f"[{mode}] N={size}: platform run", file=sys.stderr, flush=True)
                try:
                    rows.append(asyncio.run(
                        _platform_run(stack, size, words, args.rate, args.workers, args.quiet_wait)).row())
                finally:
                    stack.stop_workers()
                    for name in worker_names(size, args.workers) + ["undrain"]:
                        tail = stack.log_tail(name, 10)
                        if tail:
                            print(f"--- {name}.log (last lines)\n{tail}", file=sys.stderr)
                for row in rows[-2:]:
                    print(f"[{mode}] N={size}: {json.dumps(row)}", file=sys.stderr, flush=True)
        print_table(mode, rows)
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes, "words": words, "rate": args.rate,
                                         "workers": args.workers, "results": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
