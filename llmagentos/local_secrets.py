"""Secrets for the two profiles.

"production" takes every secret from the environment and refuses to start
without it. "local" (what ``make run`` uses) creates missing secrets once under
DATA_DIR, readable only by the owner, and warns on stderr so nobody mistakes
the result for a production set-up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from llmagentos import env


def load_secret(
    *,
    env_var: str,
    profile: str,
    data_dir: Path,
    filename: str,
    generate: Callable[[], str],
) -> str:
    value = env.string(env_var).strip()
    if value:
        return value
    if profile == "production":
        raise ImproperlyConfigured(
            f"{env_var} must be set in the production profile (refusing to start without it)"
        )
    path = data_dir / filename
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = generate()
    # O_EXCL: two processes starting at once must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    print(
        f"WARNING: {env_var} not set; generated a local one in {path} "
        "(local profile only; set it in the environment for production)",
        file=sys.stderr,
    )
    return value


# What Django's deploy check (security.W009) asks of a SECRET_KEY.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_DISTINCT_CHARACTERS = 5
_INSECURE_PREFIX = "django-insecure-"  # what startproject writes: a key for development only


def refuse_weak_secret_key(value: str) -> None:
    """The production profile starts only with a strong SECRET_KEY (never shown in the error)."""
    if (
        len(value) < SECRET_KEY_MIN_LENGTH
        or len(set(value)) < SECRET_KEY_MIN_DISTINCT_CHARACTERS
        or value.startswith(_INSECURE_PREFIX)
    ):
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for the production profile: it needs at least {SECRET_KEY_MIN_LENGTH} "
            f"characters, {SECRET_KEY_MIN_DISTINCT_CHARACTERS} or more of them different, and no "
            f"{_INSECURE_PREFIX!r} prefix (e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
