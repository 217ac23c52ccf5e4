"""Huey baselines for bench/throughput.py: what Huey alone does on the same
queue storage, with and without the database writes a platform task makes.

Django-free on purpose (huey, psycopg, sqlite3 only): the baselines measure the
queue and the writes themselves, so the gap to the platform is everything the
platform adds on top (ORM, admission, encryption, dispatch, streaming, leases).

Two jobs (the enqueuing process imports this module as ``huey_baseline``; the
consumer runs it as a script, under the same module name):

* ``bench.noop``: nothing.
* ``bench.record``: the writes of one platform task, each its own autocommit
  statement on a connection kept per consumer thread: insert a row
  (``queued``), update it to ``running`` (worker, start time), update it to
  ``succeeded`` with a small payload (the size of the platform's encrypted
  output for a short echo).

    python bench/huey_baseline.py --queue redis://127.0.0.1:6379/15 | PATH.sqlite3 --name QUEUE \\
        [--db postgres://… | PATH.sqlite3] --threads N --expect M [--timeout S]

runs a Huey consumer with N worker threads until M jobs have ended and prints
one JSON line on stdout: {"ended", "errors", "seconds"} where seconds runs from
the consumer's start to the M-th end (the jobs are on the queue before it starts).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable

from huey import PriorityRedisHuey, SqliteHuey
from huey.api import Huey
from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

TABLE = "bench_throughput_row"
# A platform task's output_ciphertext for a short echo is a Fernet token of about this size.
PAYLOAD = os.urandom(140)


# --- the database the "record" job writes ------------------------------------------------


class Rows:
    """The baseline's table on PostgreSQL (a URL) or SQLite (a file path)."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.postgres = db.startswith(("postgres://", "postgresql://"))
        self._local = threading.local()

    def _connect(self):
        if self.postgres:
            import psycopg

            return psycopg.connect(self.db, autocommit=True)
        # As the platform opens its SQLite database (llmagentos/settings.py).
        conn = sqlite3.connect(self.db, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def connection(self):
        """This thread's connection (a consumer thread keeps one for all its jobs)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.postgres:
            sql = sql.replace("%s", "?")
        cursor = self.connection().execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def create(self) -> None:
        blob = "bytea" if self.postgres else "blob"
        stamp = "timestamptz" if self.postgres else "text"
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id char(36) PRIMARY KEY, state varchar(16) NOT NULL, "
            f"worker varchar(200) NOT NULL DEFAULT '', created_at {stamp} NOT NULL, started_at {stamp}, "
            f"finished_at {stamp}, output {blob})"
        )
        self.execute(f"DELETE FROM {TABLE}")

    def drop(self) -> None:
        self.execute(f"DROP TABLE IF EXISTS {TABLE}")

    def count(self, state: str) -> int:
        return self.execute(f"SELECT count(*) FROM {TABLE} WHERE state = %s", (state,))[0][0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def record(self, row_id: str, worker: str) -> None:
        self.execute(f"INSERT INTO {TABLE} (id, state, created_at) VALUES (%s, 'queued', CURRENT_TIMESTAMP)", (row_id,))
        self.execute(
            f"UPDATE {TABLE} SET state = 'running', worker = %s, started_at = CURRENT_TIMESTAMP "
            "WHERE id = %s AND state = 'queued'",
            (worker, row_id),
        )
        self.execute(
            f"UPDATE {TABLE} SET state = 'succeeded', finished_at = CURRENT_TIMESTAMP, output = %s "
            "WHERE id = %s AND state = 'running'",
            (PAYLOAD, row_id),
        )


# --- the queue ---------------------------------------------------------------------------


def open_huey(queue: str, name: str) -> Huey:
    """Huey on the platform's kind of storage: PriorityRedisHuey (the class the
    platform uses on Redis) or SqliteHuey, with Huey's own defaults otherwise."""
    if queue.startswith("redis://"):
        return PriorityRedisHuey(name, url=queue, results=False)
    return SqliteHuey(name, filename=queue, results=False)


class Jobs:
    """The two baseline jobs on one Huey instance."""

    def __init__(self, huey: Huey, rows: Rows | None) -> None:
        self.huey = huey
        self.rows = rows
        worker = f"{os.uname().nodename}:{os.getpid()}"
        self.noop = huey.task(name="bench.noop")(_noop)

        def record(row_id: str) -> None:
            assert rows is not None, "--db is needed for bench.record"
            rows.record(row_id, worker)

        self.record = huey.task(name="bench.record")(record)

    def enqueue(self, kind: str, count: int) -> float:
        """Put ``count`` jobs of ``kind`` ("noop" or "record") on the queue; seconds taken."""
        job: Callable = self.noop if kind == "noop" else self.record
        began = time.perf_counter()
        for _ in range(count):
            if kind == "noop":
                job()
            else:
                job(str(uuid.uuid4()))
        return time.perf_counter() - began


def _noop() -> None:
    pass


# --- the consumer --------------------------------------------------------------------------


def consume(jobs: Jobs, threads: int, expect: int, timeout: float) -> dict[str, float | int]:
    """Run a consumer with ``threads`` workers until ``expect`` jobs ended (or ``timeout``)."""
    lock = threading.Lock()
    counts = {"ended": 0, "errors": 0}
    last_end = [0.0]
    done = threading.Event()

    @jobs.huey.signal(SIGNAL_COMPLETE, SIGNAL_ERROR)
    def ended(signal: str, task, *args) -> None:
        now = time.perf_counter()
        with lock:
            counts["ended"] += 1
            counts["errors"] += signal == SIGNAL_ERROR
            last_end[0] = now
            if counts["ended"] >= expect:
                done.set()

    # No periodic scheduler: the platform's workers run none either.
    consumer = jobs.huey.create_consumer(workers=threads, worker_type="thread", periodic=False)
    began = time.perf_counter()
    consumer.start()
    done.wait(timeout)
    consumer.stop(graceful=True)
    if jobs.rows is not None:
        jobs.rows.close()
    return {**counts, "seconds": round((last_end[0] or time.perf_counter()) - began, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", required=True, help="redis://… or the SqliteHuey file")
    parser.add_argument("--name", required=True, help="the Huey queue name")
    parser.add_argument("--db", help="postgres://… or an SQLite file (for bench.record)")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    jobs = Jobs(open_huey(args.queue, args.name), Rows(args.db) if args.db else None)
    print(json.dumps(consume(jobs, args.threads, args.expect, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    # Huey keys a job by its function's module and name: run the code as the
    # module "huey_baseline", the name under which bench/throughput.py imports it.
    import huey_baseline

    sys.exit(huey_baseline.main())
