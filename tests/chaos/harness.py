"""The chaos harness: a throwaway PostgreSQL cluster and Redis server of the
tests' own, the platform's real processes against them, and the faults.

Nothing here touches the PostgreSQL (5432) or Redis (6379) the rest of the
suite uses: the cluster is initdb'ed into a temporary directory and the Redis
server is a child process, each on a free port, so stopping, restarting or
flushing them harms nobody.

PostgreSQL's server refuses to run as root, so its binaries run as the
``postgres`` OS user through ``runuser``; without the binaries, ``runuser``,
root or that user, the chaos tests skip with the reason (``missing_tools``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis

from tests.e2e.conftest import REPO_ROOT, free_port
from tests.e2e.harness import wait_for_readyz

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
START_TIMEOUT = 90.0  # a platform process on a loaded 2-core machine


def _pg_bin() -> Path | None:
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def missing_tools() -> str | None:
    """Why the chaos tests cannot run here, or None when they can."""
    if _pg_bin() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin"
    if shutil.which("runuser") is None:
        return "no runuser: PostgreSQL must run as the postgres user"
    if os.geteuid() != 0:
        return "not root: runuser cannot start PostgreSQL as the postgres user"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres OS user to run PostgreSQL as"
    if shutil.which("redis-server") is None:
        return "no redis-server"
    return None


def _run(argv: list[str], timeout: float = 120) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


NETNS_SUBNET = "10.231.0.0/16"


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, on its own port, trust auth.

    ``listen`` adds addresses besides 127.0.0.1 (the network-namespace test's
    veth address). Durability is off (fsync, synchronous_commit): nothing here
    must survive a crash of the machine, only a stop and start of the server.
    """

    def __init__(self, listen: tuple[str, ...] = ()) -> None:
        self.bin = _pg_bin()
        assert self.bin is not None, missing_tools()
        self.root = Path(tempfile.mkdtemp(prefix="llmagentos-chaos-pg-"))
        postgres = pwd.getpwnam("postgres")
        os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.listen = ("127.0.0.1", *listen)
        self._as_postgres(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        # The network-namespace test's worker connects from its veth address (NetworkNamespace).
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {NETNS_SUBNET} trust\n")

    def _as_postgres(self, argv: list[str], timeout: float = 120) -> str:
        assert self.bin is not None
        return _run(["runuser", "-u", "postgres", "--", str(self.bin / argv[0]), *argv[1:]], timeout)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={','.join(self.listen)} -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._as_postgres(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"]
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every session is ended at once (what a restart does to the platform)."""
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def is_running(self) -> bool:
        assert self.bin is not None
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
        )
        return done.returncode == 0

    def url(self, dbname: str, host: str = "127.0.0.1") -> str:
        return f"postgres://postgres@{host}:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres"), autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.is_running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class ThrowawayRedis:
    """A redis-server child process on its own port, nothing persisted."""

    def __init__(self, bind: tuple[str, ...] = ()) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llmagentos-chaos-redis-"))
        self.port = free_port()
        self.bind = ("127.0.0.1", *bind)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.root / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", *self.bind, "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", str(self.root), "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                pass
            assert self.process.poll() is None, (self.root / "server.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not answer in 30 s"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: what a crash (or an OOM kill) does; nothing was persisted."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def flush(self) -> None:
        self.client().flushall()

    def url(self, db: int = 0, host: str = "127.0.0.1") -> str:
        return f"redis://{host}:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class Proc:
    """A platform process with its stdout and stderr in ``log_dir/NAME.log`` (shown when a
    check fails); a restart under the same name appends to the same log."""

    def __init__(self, env: dict[str, str], name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log_dir / f"{name}.log"
        # Only a worker says something on stdout (its id, once registered); nobody reads the others'.
        stdout = subprocess.PIPE if "run_worker" in argv else subprocess.DEVNULL
        with open(self.log, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=stdout, stderr=log, text=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_lines(self) -> list[dict]:
        """The JSON lines of its log (LOG_FORMAT=json); other lines (tracebacks) are skipped."""
        lines = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()


def netns_missing() -> str | None:
    """Why a worker cannot be put in a network namespace here, or None."""
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    name = f"llmprobe{uuid.uuid4().hex[:6]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if done.returncode != 0:
        return f"ip netns add fails here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


class NetworkNamespace:
    """A network namespace joined to the host by a veth pair on a /30 of its own.

    The cluster's servers also listen on the host end's address while it
    exists; ``cut`` takes the host end down (packets are dropped, connections
    hang as on a real cut), ``restore`` brings it back up.
    """

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.name = f"llmchaos-{tag}"
        self.host_end, self.ns_end = f"vh{tag}", f"vn{tag}"
        subnet = random.randrange(1, 250)  # in NETNS_SUBNET
        self.host_ip, self.ns_ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
        self.exec_prefix = ("ip", "netns", "exec", self.name)

    def create(self) -> None:
        _run(["ip", "netns", "add", self.name])
        _run(["ip", "link", "add", self.host_end, "type", "veth", "peer", "name", self.ns_end])
        _run(["ip", "link", "set", self.ns_end, "netns", self.name])
        _run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_end])
        _run(["ip", "link", "set", self.host_end, "up"])
        for command in (["ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_end],
                        ["ip", "link", "set", self.ns_end, "up"], ["ip", "link", "set", "lo", "up"]):
            _run([*self.exec_prefix, *command])

    def destroy(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)  # takes the veth pair with it
        subprocess.run(["ip", "link", "del", self.host_end], capture_output=True)

    def cut(self) -> None:
        _run(["ip", "link", "set", self.host_end, "down"])

    def restore(self) -> None:
        _run(["ip", "link", "set", self.host_end, "up"])

    def env_for(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with the servers reached through the veth pair."""
        return {**env, "DATABASE_URL": env["DATABASE_URL"].replace("@127.0.0.1:", f"@{self.host_ip}:"),
                "REDIS_URL": env["REDIS_URL"].replace("//127.0.0.1:", f"//{self.host_ip}:")}

    @classmethod
    @contextlib.contextmanager
    def around(cls, cluster: Cluster) -> Iterator[NetworkNamespace]:
        """A namespace whose processes reach the cluster's servers (restarted to listen there too)."""
        namespace = cls()
        namespace.create()
        try:
            cluster.postgres.listen = ("127.0.0.1", namespace.host_ip)
            cluster.postgres.stop()
            cluster.postgres.start()
            cluster.redis.bind = ("127.0.0.1", namespace.host_ip)
            cluster.redis.kill()
            cluster.redis.start()
            yield namespace
        finally:
            # Later restarts listen on 127.0.0.1 alone again (the address goes with the namespace).
            cluster.postgres.listen = ("127.0.0.1",)
            cluster.redis.bind = ("127.0.0.1",)
            namespace.destroy()


@dataclass
class Cluster:
    """The throwaway servers of one chaos session, and the database every test copies."""

    postgres: ThrowawayPostgres
    redis: ThrowawayRedis
    data_dir: Path  # shared: it holds the local master key the template's tenant was made with
    template: str
    api_key: str


TEMPLATE_DB = "chaos_template"
ECHO_MODEL = "echo-chaos"
POISON_MODEL = "poison"
CRASH_MODEL = "crash"
PLUGINS = "plugins.echo,tests.chaos.poison_plugin"


def platform_env(cluster: Cluster, database_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LLMAGENTOS_PROFILE", "ALLOWED_HOSTS")}
    env.update(
        DATA_DIR=str(cluster.data_dir),
        DATABASE_URL=database_url,
        REDIS_URL=cluster.redis.url(),
        LLMAGENTOS_PLUGINS=PLUGINS,
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        DB_POOL_MAX_SIZE="4",
    )
    env.update(overrides)
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"manage.py {args[0]}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


@contextlib.contextmanager
def chaos_cluster(work_dir: Path) -> Iterator[Cluster]:
    """Start the throwaway servers and build the template database: migrated, one
    tenant (no rate or running limits, so the faults are the only thing in the
    way) with an API key, and the echo, poison and crash models."""
    postgres = ThrowawayPostgres()
    redis_server = ThrowawayRedis()
    try:
        postgres.start()
        redis_server.start()
        postgres.create_database(TEMPLATE_DB)
        data_dir = work_dir / "data"
        cluster = Cluster(postgres, redis_server, data_dir, TEMPLATE_DB, api_key="")
        env = platform_env(cluster, postgres.url(TEMPLATE_DB))
        _manage(env, "migrate", "--no-input", "-v", "0")
        slug = _manage(env, "create_tenant", "Chaos Corp")
        _manage(env, "set_plan", slug, "--rpm", "unlimited", "--tpm", "unlimited", "--max-running", "unlimited",
                "--max-queued", "unlimited")
        cluster.api_key = _manage(env, "create_api_key", slug)
        _manage(env, "shell", "--no-imports", "-v", "0", "-c", f"""
from apps.catalog.models import LLMModel
LLMModel.objects.create(name={ECHO_MODEL!r}, adapter="echo", is_public=True, adapter_config={{"words_per_second": 10}})
LLMModel.objects.create(name={POISON_MODEL!r}, adapter="poison", is_public=True, adapter_config={{"mode": "raise"}})
LLMModel.objects.create(name={CRASH_MODEL!r}, adapter="poison", is_public=True, adapter_config={{"mode": "crash"}})
""")
        yield cluster
    finally:
        redis_server.destroy()
        postgres.destroy()


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Platform:
    """One test's platform: its own database (a copy of the template) and Huey
    queue name on the session's servers, its processes, and a tenant's client."""

    cluster: Cluster
    work_dir: Path
    env: dict[str, str] = field(init=False)
    database_url: str = field(init=False)
    processes: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        name = f"chaos_{uuid.uuid4().hex[:10]}"
        self.cluster.redis.flush()  # nothing left over from the previous test
        self.database_url = self.cluster.postgres.create_database(name, template=self.cluster.template)
        self.env = platform_env(
            self.cluster, self.database_url,
            HUEY_NAME=f"chaos-{name}",
            HOST="127.0.0.1",
            PORT=str(free_port()),
            # Leases, heartbeats and the reaper keep their defaults: the figures
            # printed are what an operator who changed nothing gets.
        )
        self.logs = self.work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.base_url = f"http://{self.env['HOST']}:{self.env['PORT']}"
        self.client = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.cluster.api_key}"}, timeout=15
        )

    # --- processes -----------------------------------------------------------------------

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(env or self.env, name, argv, self.logs)
        self.processes.append(proc)
        return proc

    def start_server(self) -> Proc:
        server = self._start("server", [
            sys.executable, "-m", "uvicorn", "llmagentos.asgi:application",
            "--host", self.env["HOST"], "--port", self.env["PORT"], "--no-access-log",
        ])
        wait_for_readyz(self.base_url, server.process, server.log_text, START_TIMEOUT)
        return server

    def start_scheduler(self, name: str = "scheduler") -> Proc:
        return self._start(name, [sys.executable, "manage.py", "run_scheduler"])

    def start_worker(self, name: str, slots: int = 4, prefix: tuple[str, ...] = (),
                     env: dict[str, str] | None = None) -> Proc:
        """``prefix``: what the command runs under (``ip netns exec NS``)."""
        argv = [*prefix, sys.executable, "manage.py", "run_worker", "--name", name, "--slots", str(slots)]
        worker = self._start(name, argv, env)
        self.wait_registered(worker)
        return worker

    def wait_registered(self, worker: Proc) -> None:
        """A registered worker prints its id, and only that, on stdout."""
        deadline = time.monotonic() + START_TIMEOUT
        line = ""
        while not line:
            assert worker.alive(), f"{worker.name} exited during start-up:\n{worker.log_text()}"
            assert time.monotonic() < deadline, f"{worker.name} did not register:\n{worker.log_text()}"
            line = worker.process.stdout.readline().strip()
        uuid.UUID(line)

    def restart(self, proc: Proc, **env: str) -> Proc:
        """The same process again, under the same name and log (after a kill or a
        crash), with ``env`` changed if given."""
        proc.kill()
        self.processes.remove(proc)
        fresh = self._start(proc.name, proc.argv, {**proc.env, **env})
        if "run_worker" in proc.argv:
            self.wait_registered(fresh)
        if "uvicorn" in proc.argv:
            wait_for_readyz(self.base_url, fresh.process, fresh.log_text, START_TIMEOUT)
        return fresh

    def start_all(self, workers: int = 3, slots: int = 4) -> list[Proc]:
        """The server, one scheduler and ``workers`` workers; returns the workers."""
        self.start_server()
        self.start_scheduler()
        return [self.start_worker(f"worker-{index}", slots=slots) for index in range(workers)]

    def all_log_lines(self) -> list[dict]:
        return [line for proc in self.processes for line in proc.log_lines()]

    def logs_text(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log_text()[-6000:]}" for p in self.processes)

    def shutdown(self) -> None:
        for proc in self.processes:
            proc.kill()
        self.client.close()

    # --- the tenant's side -----------------------------------------------------------------

    def submit(self, prompt: str, model: str = ECHO_MODEL, **fields: object) -> str:
        created = self.client.post("/api/v1/tasks", json={"model": model, "prompt": prompt, **fields})
        assert created.status_code == 201, f"{created.text}\n{self.logs_text()}"
        return created.json()["id"]

    def wait_all_finished(self, task_ids: list[str], timeout: float) -> dict[str, dict]:
        """Every task's row once all are terminal (read from the database: one query a round)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.tasks(task_ids)
            pending = [tid for tid, row in rows.items() if row["state"] not in ("succeeded", "failed", "cancelled")]
            if not pending:
                return rows
            assert time.monotonic() < deadline, (
                f"{len(pending)} of {len(task_ids)} tasks never finished, e.g. {rows[pending[0]]}\n{self.logs_text()}"
            )
            time.sleep(0.3)

    def submit_many(self, label: str, count: int, words: int = 8) -> dict[str, str]:
        """{task id: prompt} of ``count`` echo tasks of ``words`` words (~0.1 s a word)."""
        prompts = [" ".join([f"{label}{index}"] + [f"w{i}" for i in range(words - 1)]) for index in range(count)]
        return {self.submit(prompt): prompt for prompt in prompts}

    def assert_each_succeeded_once(
        self, prompts: dict[str, str], timeout: float, kills: int = 0,
    ) -> dict[str, dict]:
        """Wait for the tasks; each succeeded with its whole output (as the tenant
        reads it), its end was recorded once, and it was charged once. Their rows.

        ``kills``: workers SIGKILLed meanwhile. The "ended" line is logged just after
        the end's commit, so a kill in between loses that line (not the end): up to
        one missing line per kill is allowed, a second record never."""
        rows = self.wait_all_finished(list(prompts), timeout)
        outputs = {}
        for task_id in prompts:
            body = self.client.get(f"/api/v1/tasks/{task_id}").json()
            outputs[task_id] = (body["status"], body["output"])
        wrong = {task_id: got for task_id, got in outputs.items() if got != ("succeeded", prompts[task_id])}
        assert not wrong, f"{len(wrong)} tasks did not succeed with their output, e.g. {list(wrong.items())[:3]}"
        ends = self.recorded_ends()
        twice = {task_id: ends[task_id] for task_id in prompts if ends.get(task_id, ["succeeded"]) != ["succeeded"]}
        assert not twice, f"{len(twice)} tasks' ends not recorded exactly once: {list(twice.items())[:5]}"
        unlogged = [task_id for task_id in prompts if task_id not in ends]
        assert len(unlogged) <= kills, f"{len(unlogged)} tasks' ends never logged ({kills} kills): {unlogged[:5]}"
        self.assert_charged_once(rows)
        return rows

    def probe(self, task_id: str, seconds: float) -> list[Answer]:
        """What the API answers for ``seconds`` (a dependency is down meanwhile): a
        task read, a submission and /readyz, in turn. A submission that got 201
        is a task like any other: its id is in the answer."""
        answers: list[Answer] = []
        deadline = time.monotonic() + seconds
        requests = [("GET", f"/api/v1/tasks/{task_id}", None), ("GET", "/readyz", None),
                    ("POST", "/api/v1/tasks", {"model": ECHO_MODEL, "prompt": "during the outage"})]
        while time.monotonic() < deadline:
            for method, path, body in requests:
                began = time.monotonic()
                try:
                    response = self.client.request(method, path, json=body)
                except httpx.HTTPError as exc:  # a hang past the client's timeout, a reset
                    answers.append(Answer(method, path, None, time.monotonic() - began, None, repr(exc)))
                    continue
                answers.append(Answer(
                    method, path, response.status_code, time.monotonic() - began,
                    response.headers.get("Retry-After"), response.text,
                ))
            time.sleep(0.2)
        return answers

    def ready(self) -> bool:
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_for(self, condition: Callable[[], bool], timeout: float, failure: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{failure}\n{self.logs_text()}"
            time.sleep(0.2)

    # --- the records ----------------------------------------------------------------------

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)

    def tasks(self, task_ids: list[str]) -> dict[str, dict]:
        with self.db() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(
                "SELECT id::text AS id, state, attempt, worker_name, error_code, error_message, started_at, "
                "finished_at, prompt_tokens, completion_tokens FROM tasks_task WHERE id = ANY(%s::uuid[])",
                (task_ids,),
            )
            return {row["id"]: row for row in cur.fetchall()}

    def charges(self) -> dict[str, dict]:
        with self.db() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute("SELECT task_id::text AS task_id, prompt_tokens, completion_tokens, settled_at "
                        "FROM tenants_taskcharge")
            return {row["task_id"]: row for row in cur.fetchall()}

    def ledger_totals(self) -> tuple[int, int]:
        """(spent, reserved) over the tenant's budget ledger rows."""
        with self.db() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(spent_tokens), 0), COALESCE(SUM(reserved_tokens), 0) FROM tenants_budgetledger"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def worker_row(self, name: str) -> dict:
        with self.db() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute("SELECT state, in_flight, last_heartbeat_at FROM workers_worker WHERE name = %s", (name,))
            row = cur.fetchone()
        assert row is not None, name
        return row

    def running_on(self, worker_name: str) -> dict[str, int]:
        """{task id: attempt} of the tasks the database shows running on ``worker_name``."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT id::text, attempt FROM tasks_task WHERE state = 'running' AND worker_name = %s",
                (worker_name,),
            ).fetchall()
        return {task_id: attempt for task_id, attempt in rows}

    def recorded_ends(self) -> dict[str, list[str]]:
        """{task id: [the end each recording logged]}: finish_task logs "ended <state>"
        only when its conditional UPDATE wrote the end, so two entries are two records."""
        ends: dict[str, list[str]] = {}
        for line in self.all_log_lines():
            message = line.get("message", "")
            if line.get("task_id") and message.startswith("ended "):
                ends.setdefault(line["task_id"], []).append(message.split()[1].rstrip(","))
        return ends

    def attempts_started(self) -> dict[str, int]:
        """{task id: attempts the workers logged starting}."""
        started: dict[str, int] = {}
        for line in self.all_log_lines():
            if line.get("task_id") and line.get("message", "").startswith("attempt "):
                started[line["task_id"]] = started.get(line["task_id"], 0) + 1
        return started

    def assert_charged_once(self, rows: dict[str, dict]) -> None:
        """Each task has one charge, settled at its recorded usage, and the ledger's
        spent tokens are their sum: nothing charged twice, nothing left reserved."""
        charges = self.charges()
        assert set(charges) >= set(rows), "a task without its charge"
        for task_id, row in rows.items():
            charge = charges[task_id]
            assert charge["settled_at"] is not None, (task_id, charge)
            assert (charge["prompt_tokens"], charge["completion_tokens"]) == (
                row["prompt_tokens"] or 0, row["completion_tokens"] or 0), (row, charge)
        spent, reserved = self.ledger_totals()
        assert (spent, reserved) == (
            sum(c["prompt_tokens"] + c["completion_tokens"] for c in charges.values()), 0)


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int | None  # None: no answer (a timeout, a reset)
    seconds: float
    retry_after: str | None
    body: str

    def created_task(self) -> str | None:
        if self.status != 201:
            return None
        return json.loads(self.body)["id"]


class Babysitter(threading.Thread):
    """Restarts any of ``workers`` that died (what a service manager does), until stopped."""

    def __init__(self, platform: Platform, workers: list[Proc]) -> None:
        super().__init__(name="chaos-babysitter", daemon=True)
        self.platform = platform
        self.workers = workers
        self.restarts = 0
        self._halt = threading.Event()

    def __enter__(self) -> Babysitter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        while not self._halt.wait(0.2):
            for index, worker in enumerate(self.workers):
                if not worker.alive():
                    self.workers[index] = self.platform.restart(worker)
                    self.restarts += 1


class Watcher(threading.Thread):
    """Polls the database while a run goes on: how long after a fault (at a known
    time, of a kind named by ``label``) each of the given tasks was claimed again."""

    def __init__(self, platform: Platform, interval: float = 0.1) -> None:
        super().__init__(name="chaos-watcher", daemon=True)
        self.platform = platform
        self.interval = interval
        self._lock = threading.Lock()
        self._watched: dict[str, tuple[int, float, str]] = {}  # task id -> (attempt killed, when, label)
        self.delays_by_label: dict[str, list[float]] = {}
        self._halt = threading.Event()

    def watch(self, attempts: dict[str, int], at: float, label: str = "") -> None:
        with self._lock:
            for task_id, attempt in attempts.items():
                self._watched[task_id] = (attempt, at, label)

    @property
    def delays(self) -> list[float]:
        return [delay for delays in self.delays_by_label.values() for delay in delays]

    def pending(self) -> int:
        with self._lock:
            return len(self._watched)

    def run(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                ids = list(self._watched)
            if ids:
                try:
                    rows = self.platform.tasks(ids)
                except psycopg.Error:
                    rows = {}
                now = time.monotonic()
                with self._lock:
                    for task_id, row in rows.items():
                        attempt, at, label = self._watched[task_id]
                        if row["attempt"] > attempt:  # claimed again: from the kill to the re-claim
                            self.delays_by_label.setdefault(label, []).append(now - at)
                            del self._watched[task_id]
                        elif row["state"] in ("succeeded", "failed", "cancelled"):
                            del self._watched[task_id]  # the killed attempt had recorded its end already
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
