"""Helpers shared by tests that start real processes."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg


@contextlib.contextmanager
def fresh_postgres_database(base_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``base_url``; dropped afterwards."""
    info = psycopg.conninfo.conninfo_to_dict(base_url)
    name = f"llmagentos_proc_{uuid.uuid4().hex[:10]}"
    admin = {**info, "dbname": "postgres"}
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    prefix = base_url.rsplit("/", 1)[0]
    try:
        yield f"{prefix}/{name}"
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
