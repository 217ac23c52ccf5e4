"""The production profile refuses to start with a weak SECRET_KEY, saying why
(never showing the key): fewer than 50 characters, fewer than 5 different
ones, or Django's development prefix, as its deploy check (security.W009) asks."""

from __future__ import annotations

import pytest

from tests.integration.manage_cli import describe, manage, production_env

WEAK_KEYS = {
    "49 characters": "Kx9-" * 12 + "Q",
    "4 different characters": "abcd" * 20,
    "the development prefix": "django-insecure-" + "Vq3_Lm8ZpR2nWc7tYh5kJd4sFg6bXa1eTu0oIyNvM9",
}


@pytest.mark.parametrize("weak", list(WEAK_KEYS.values()), ids=list(WEAK_KEYS))
def test_production_refuses_a_weak_secret_key(tmp_path, weak):
    result = manage("check", env=production_env(tmp_path, SECRET_KEY=weak))

    assert result.returncode != 0, describe(result)
    assert "SECRET_KEY is too weak for the production profile" in result.stderr, describe(result)
    assert weak not in result.stdout + result.stderr


def test_production_starts_with_a_strong_secret_key(tmp_path):
    """The counterpart: 50 random url-safe characters (what the error suggests) pass."""
    result = manage("check", env=production_env(tmp_path))

    assert result.returncode == 0, describe(result)
