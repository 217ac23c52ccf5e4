"""An isolated platform environment per test: its own data dir, database and queue name."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import fresh_postgres_database

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def isolated_platform_env(tmp_path: Path, **overrides: str) -> Iterator[dict[str, str]]:
    """Environment for platform processes: embedded (SQLite) or distributed, like the suite."""
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        HOST="127.0.0.1",
        PORT=str(free_port()),
        HUEY_NAME=f"llmagentos-e2e-{uuid.uuid4().hex[:8]}",
        WORKER_THREADS="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    if os.environ.get("DATABASE_URL"):
        with fresh_postgres_database(os.environ["DATABASE_URL"]) as url:
            env["DATABASE_URL"] = url
            yield env
    else:
        yield env


@pytest.fixture
def platform_env(tmp_path) -> Iterator[dict[str, str]]:
    with isolated_platform_env(tmp_path) as env:
        yield env
