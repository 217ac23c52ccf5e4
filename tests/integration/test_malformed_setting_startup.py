"""A malformed environment value stops start-up with one line that says what is wrong.

A real ``manage.py check`` process: it exits non-zero, stderr names the
variable, the value and the form expected (llmagentos/env.py), with no
traceback, and secrets stay out of it.
"""

from __future__ import annotations

import pytest

from tests.integration.manage_cli import base_env, describe, manage


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "WORKER_HEARTBEAT_SECONDS",
            "abc",
            "ImproperlyConfigured: WORKER_HEARTBEAT_SECONDS='abc': expected a number of seconds (at least 0)",
        ),
        (
            "DATABASE_URL",
            "postgres://app:s3cret-pw@db.internal:five/llm",
            "ImproperlyConfigured: DATABASE_URL='postgres://app:***@db.internal:five/llm': "
            "expected a database URL such as postgres://user:password@host:5432/name",
        ),
        (
            "MASTER_KEYS",
            "s3cret-but-not-a-fernet-key",
            "ImproperlyConfigured: MASTER_KEYS=<hidden>: "
            "expected comma-separated Fernet keys (32 url-safe base64-encoded bytes each)",
        ),
    ],
)
def test_start_up_refuses_a_malformed_value_in_one_line(tmp_path, variable, value, line):
    result = manage("check", env=base_env(tmp_path, **{variable: value}))

    assert result.returncode != 0, describe(result)
    assert line in result.stderr.splitlines(), describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert "s3cret" not in result.stdout + result.stderr
    assert "System check identified" not in result.stdout + result.stderr
