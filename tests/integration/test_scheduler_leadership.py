"""apps.scheduler.leadership: one holder of the scheduler lock at a time.

The suite's backend picks the lock: a PostgreSQL advisory lock on a
connection of its own (DATABASE_URL set), else a file lock under DATA_DIR.
The waits below only bound a failure: a freed lock is taken at the next try.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from apps.scheduler.leadership import AdvisoryLockLeadership, FileLockLeadership, Leadership, this_process

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]
FAILURE_WAIT = 60.0


@pytest.fixture
def locks() -> Iterator[list[Leadership]]:
    """Two schedulers' locks on the test database; released afterwards."""
    made = [Leadership.for_database(), Leadership.for_database()]
    yield made
    for lock in made:
        lock.release()


def test_the_lock_fits_the_database(locks):
    expected = AdvisoryLockLeadership if connection.vendor == "postgresql" else FileLockLeadership
    assert all(isinstance(lock, expected) for lock in locks)


def test_only_one_holds_and_a_release_hands_it_over(locks):
    first, second = locks

    assert first.acquire()
    assert not second.acquire()
    assert first.holds() and not second.holds()
    assert second.leader() == this_process()  # a standby can say whom it waits for

    first.release()

    assert not first.holds()
    assert second.acquire() and second.holds()
    assert not first.acquire()


def test_acquiring_again_while_holding_keeps_it(locks):
    first, second = locks
    assert first.acquire() and first.acquire()
    assert not second.acquire()


def _test_database_env() -> dict[str, str]:
    """The environment of a process that locks what this test process locks."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="llmagentos.settings", PYTHONPATH=str(REPO_ROOT))
    env["DATA_DIR"] = str(settings.DATA_DIR)
    if connection.vendor == "postgresql":
        # Advisory locks belong to one database: the test database, not DATABASE_URL's.
        url = urlsplit(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{connection.settings_dict['NAME']}"))
    return env


def test_the_lock_dies_with_its_holders_process(locks):
    mine = locks[0]
    code = (
        "import django, sys, time; django.setup()\n"
        "from apps.scheduler.leadership import Leadership\n"
        "lock = Leadership.for_database()\n"
        "print('held' if lock.acquire() else 'refused', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=_test_database_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert not mine.acquire()
        assert mine.leader() == f"{holder.pid}@{socket.gethostname()}"

        holder.kill()  # SIGKILL: no release, no clean exit
        holder.wait()

        deadline = time.monotonic() + FAILURE_WAIT
        while not mine.acquire():
            assert time.monotonic() < deadline, "the dead holder's lock was never freed"
            time.sleep(0.1)
        assert mine.holds()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


@pytest.mark.skipif(not os.environ.get("DATABASE_URL"), reason="an advisory lock lives in a PostgreSQL session")
def test_a_leader_whose_session_ends_holds_nothing_and_a_standby_takes_over(locks):
    leader, standby = locks
    assert isinstance(leader, AdvisoryLockLeadership)
    assert leader.acquire()
    with connection.cursor() as cursor:  # the server ends the leader's session (a restart, a cut)
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = %s",
            (leader.key,),
        )

    deadline = time.monotonic() + FAILURE_WAIT
    while leader.holds():  # the termination reaches its socket at once; this only bounds a failure
        assert time.monotonic() < deadline, "the leader never noticed its session was gone"
        time.sleep(0.05)
    assert standby.acquire()
    assert not leader.acquire()
