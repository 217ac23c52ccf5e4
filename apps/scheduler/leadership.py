"""Which scheduler dispatches: one leader, any number of standbys.

Two schedulers dispatching at once would hand out more tasks than the workers
have slots and split the fair-share state between them, so only the holder of
one lock dispatches and runs the periodic jobs (``manage.py run_scheduler``);
the others poll for it and take over when its holder dies.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) taken on
  a connection of its own, held for the leader's whole life. The lock dies with
  that session: a killed leader's socket closes and the server frees the lock
  at once; a leader cut off from the server loses its session within the
  keepalive bounds set on both ends below. The leader asks its connection each
  round (``holds``) and stops dispatching the moment it is gone.
- Embedded (SQLite, one host): ``fcntl.flock`` on ``DATA_DIR/scheduler.lock``,
  which the kernel frees when the holding process dies.

Each leader names itself (``pid@host``): in the PostgreSQL session's
application_name, or in the lock file, so a standby can say whom it waits for.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

LOCK_FILE_NAME = "scheduler.lock"
# How often a standby asks for the lock: a dead leader's standby dispatches
# within this plus one round (the takeover bound is 5 s).
STANDBY_POLL_SECONDS = 1.0
_APPLICATION_PREFIX = "llmagentos-scheduler "
# How long the server waits on a silent leader before its session (and lock) ends:
# keepalives and unacknowledged data both time out within ~5 s.
_SERVER_SESSION_BOUNDS = (
    "SET tcp_keepalives_idle = 2",
    "SET tcp_keepalives_interval = 1",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 5000",
)


def this_process() -> str:
    """How a leader names itself: ``pid@host``."""
    return f"{os.getpid()}@{socket.gethostname()}"


class Leadership(ABC):
    """The scheduler lock: ``acquire`` (try once, never waits), ``holds``, ``release``."""

    @abstractmethod
    def acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this object holds it now."""

    @abstractmethod
    def holds(self) -> bool:
        """Whether this object still holds the lock (asks the database: a lost
        connection means a lost lock)."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock up (a standby may take it at once)."""

    @abstractmethod
    def leader(self) -> str | None:
        """Who holds the lock (``pid@host``), if known."""

    @staticmethod
    def for_database(alias: str = "default") -> Leadership:
        """The lock that fits the database: an advisory lock on PostgreSQL, else a file lock."""
        if connections[alias].vendor == "postgresql":
            return AdvisoryLockLeadership(alias)
        return FileLockLeadership(Path(settings.DATA_DIR) / LOCK_FILE_NAME)


class AdvisoryLockLeadership(Leadership):
    """A PostgreSQL session-level advisory lock on a connection of its own."""

    def __init__(self, alias: str = "default", name: str | None = None) -> None:
        self._alias = alias
        # One lock per installation (HUEY_NAME names it, as it names the queues).
        self.key = _lock_key(name or settings.HUEY_NAME)
        self._connection: psycopg.Connection | None = None
        self._held = False
        self._unreachable = False

    def acquire(self) -> bool:
        if self._held and self.holds():
            return True
        try:
            conn = self._connect()
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            if not self._unreachable:  # once per outage, not once a poll
                logger.warning("scheduler lock: database unreachable: %s", exc)
            self._unreachable = True
            self._drop()
            return False
        self._unreachable = False
        self._held = bool(row and row[0])
        return self._held

    def holds(self) -> bool:
        if not self._held or self._connection is None:
            return False
        try:
            # A round trip: a session the server ended (restart, terminated, cut
            # off) fails here, and its lock is gone with it.
            self._connection.execute("SELECT 1").fetchone()
            return True
        except psycopg.Error as exc:
            logger.error("scheduler lock lost with its database connection: %s", exc)
            self._drop()
            return False

    def release(self) -> None:
        # Closing the session frees the lock; an explicit unlock first says so sooner.
        if self._held and self._connection is not None:
            try:
                self._connection.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except psycopg.Error:
                pass
        self._drop()

    def leader(self) -> str | None:
        try:
            conn = self._connect()
            row = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                # A bigint key is held as (classid, objid) = (high, low) 32 bits, objsubid 1.
                "AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                (self.key,),
            ).fetchone()
        except psycopg.Error:
            self._drop()
            return None
        if not row or not row[0]:
            return None
        return str(row[0]).removeprefix(_APPLICATION_PREFIX)

    def _connect(self) -> psycopg.Connection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        params: dict[str, Any] = connections[self._alias].get_connection_params()
        for django_only in ("cursor_factory", "context", "prepare_threshold", "pool", "client_encoding"):
            params.pop(django_only, None)
        params["application_name"] = (_APPLICATION_PREFIX + this_process())[:63]
        params.setdefault("connect_timeout", settings.DB_CONNECT_TIMEOUT_SECONDS)
        conn = psycopg.connect(autocommit=True, **params)
        for statement in _SERVER_SESSION_BOUNDS:
            try:
                conn.execute(statement)
            except psycopg.errors.DatabaseError:  # an older server without tcp_user_timeout
                pass
        self._connection = conn
        return conn

    def _drop(self) -> None:
        self._held = False
        conn, self._connection = self._connection, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass


class FileLockLeadership(Leadership):
    """``flock`` on a file: embedded mode, where every process shares one host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self.holds():
            return True
        self.release()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, this_process().encode(), 0)
        self._fd = fd
        return True

    def holds(self) -> bool:
        if self._fd is None:
            return False
        try:
            # The lock is on the file we opened: if the path now names another
            # file (removed, recreated), a second scheduler could lock that one.
            return os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor frees the lock

    def leader(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except OSError:
            return None


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` (stable across processes and hosts)."""
    digest = hashlib.sha256(f"llmagentos scheduler {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
