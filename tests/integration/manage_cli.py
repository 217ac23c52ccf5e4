"""Running ``manage.py`` as a real subprocess, against a database of its own.

Used by the tests of operator commands, start-up and settings profiles: they
check what an operator sees (stdout, stderr, exit status), so they run the
same process an operator runs.

The subprocess never shares the test process's database: on SQLite it gets
its own DATA_DIR (database, Huey file, local secrets); on PostgreSQL
(DATABASE_URL set) a fresh database is created and dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet

REPO_ROOT = Path(__file__).resolve().parents[2]
assert (REPO_ROOT / "manage.py").is_file(), REPO_ROOT

# Settings that pick a profile, its secrets or the plugins: each test sets the
# ones it is about, so whatever the caller's shell had does not leak in.
_PROFILE_VARS = ("LLMAGENTOS_PROFILE", "LLMAGENTOS_PLUGINS", "SECRET_KEY", "MASTER_KEYS", "ALLOWED_HOSTS")


def base_env(data_dir: Path, **overrides: str | None) -> dict[str, str]:
    """os.environ with DATA_DIR replaced, profile variables removed, then ``overrides``
    applied (a value of None removes the variable)."""
    env = {k: v for k, v in os.environ.items() if k not in _PROFILE_VARS}
    env["DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


PRODUCTION_HOST = "llm.example.com"


def production_env(data_dir: Path, **overrides: str | None) -> dict[str, str]:
    """``base_env`` for the production profile, with what it needs to start: strong
    secrets and the host it serves (``overrides`` change or, with None, remove them)."""
    production: dict[str, str | None] = {
        "LLMAGENTOS_PROFILE": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "MASTER_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": PRODUCTION_HOST,
    }
    return base_env(data_dir, **{**production, **overrides})


def manage(*args: str, env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` in the repository root; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shell(code: str, *, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``manage.py shell -c CODE`` with nothing but CODE's own output on stdout."""
    return manage("shell", "--no-imports", "-v", "0", "-c", code, env=env)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def _maintenance_conninfo(database_url: str) -> dict:
    import psycopg

    conninfo = psycopg.conninfo.conninfo_to_dict(database_url)
    conninfo["dbname"] = "postgres"
    return conninfo


@contextmanager
def fresh_database(data_dir: Path) -> Iterator[dict[str, str]]:
    """An environment for manage.py whose database is empty and private to it.

    SQLite: the database lives in ``data_dir`` (which must be fresh).
    PostgreSQL: ``CREATE DATABASE`` a uniquely named one on the server of
    DATABASE_URL, point DATABASE_URL at it, and drop it on exit.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        yield base_env(data_dir)
        return

    import psycopg

    name = f"llmagentos_cli_{uuid.uuid4().hex[:12]}"
    maintenance = _maintenance_conninfo(database_url)
    with psycopg.connect(**maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(database_url)
    env = base_env(data_dir, DATABASE_URL=urlunsplit(parts._replace(path=f"/{name}")))
    try:
        yield env
    finally:
        with psycopg.connect(**maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def migrated_database(data_dir: Path) -> Iterator[dict[str, str]]:
    """``fresh_database`` with ``manage.py migrate`` already run in it."""
    with fresh_database(data_dir) as env:
        result = manage("migrate", "--no-input", "-v", "0", env=env, timeout=300)
        assert result.returncode == 0, describe(result)
        yield env
