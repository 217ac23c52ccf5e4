"""Settings profiles, checked in real ``manage.py`` processes.

"production" takes its secrets from the environment and refuses to start
without them, and passes ``check --deploy``; "local" creates missing secrets
once under DATA_DIR, owner-only, and says so on stderr.
"""

from __future__ import annotations

import re
import secrets
import stat

from cryptography.fernet import Fernet

from tests.integration.manage_cli import base_env, describe, manage, production_env

# The deploy checks the production profile exists to satisfy.
PRODUCTION_HARDENING = {
    "security.W004": "SECURE_HSTS_SECONDS",
    "security.W005": "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "security.W008": "SECURE_SSL_REDIRECT",
    "security.W009": "SECRET_KEY strength",
    "security.W012": "SESSION_COOKIE_SECURE",
    "security.W016": "CSRF_COOKIE_SECURE",
    "security.W018": "DEBUG",
    "security.W021": "SECURE_HSTS_PRELOAD",
}


def _production_secrets() -> dict[str, str]:
    return {"SECRET_KEY": secrets.token_urlsafe(50), "MASTER_KEYS": Fernet.generate_key().decode()}


def _check_ids(output: str) -> set[str]:
    return set(re.findall(r"\(([\w.]+\.[EW]\d{3})\)", output))


def test_production_refuses_to_start_without_any_secret(tmp_path):
    result = manage("check", env=base_env(tmp_path, LLMAGENTOS_PROFILE="production"))

    assert result.returncode != 0, describe(result)
    assert "SECRET_KEY" in result.stderr
    assert "production" in result.stderr
    assert list(tmp_path.iterdir()) == [], "production must not generate secrets"


def test_production_names_a_missing_master_key(tmp_path):
    env = base_env(tmp_path, LLMAGENTOS_PROFILE="production", SECRET_KEY=secrets.token_urlsafe(50))

    result = manage("check", env=env)

    assert result.returncode != 0, describe(result)
    assert "MASTER_KEYS" in result.stderr
    assert not (tmp_path / "master_keys").exists()


def test_production_with_its_secrets_passes_the_deploy_checks(tmp_path):
    env = production_env(tmp_path)

    result = manage("check", "--deploy", env=env)

    assert result.returncode == 0, describe(result)
    found = _check_ids(result.stdout + result.stderr)
    hardening_warnings = {check_id for check_id in found if check_id.startswith("security.")}
    assert not hardening_warnings, describe(result)
    assert "WARNING: " not in result.stderr  # no generated secrets in production


def test_local_profile_does_not_pass_the_deploy_checks(tmp_path):
    """The counterpart of the test above: the hardening is the production profile's doing."""
    env = base_env(tmp_path, LLMAGENTOS_PROFILE="local", **_production_secrets())

    result = manage("check", "--deploy", env=env)

    found = _check_ids(result.stdout + result.stderr)
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= found, describe(result)


def test_local_profile_creates_owner_only_secrets_once_and_warns(tmp_path):
    data_dir = tmp_path / "data"  # does not exist yet
    env = base_env(data_dir, LLMAGENTOS_PROFILE="local")

    first = manage("check", env=env)

    assert first.returncode == 0, describe(first)
    created = {}
    for name, variable in (("secret_key", "SECRET_KEY"), ("master_keys", "MASTER_KEYS")):
        path = data_dir / name
        assert path.is_file(), describe(first)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
        created[name] = path.read_text().strip()
        assert created[name]
        assert variable in first.stderr
        assert str(path) in first.stderr
        assert created[name] not in first.stdout + first.stderr  # the secret itself is never printed
    for key in created["master_keys"].split(","):
        Fernet(key.encode())  # a usable Fernet key
    assert first.stdout.strip() == "System check identified no issues (0 silenced)."

    # Later starts reuse the same secrets, silently.
    second = manage("check", env=env)

    assert second.returncode == 0, describe(second)
    assert "WARNING" not in second.stderr
    assert {name: (data_dir / name).read_text().strip() for name in created} == created


def test_local_profile_prefers_secrets_from_the_environment(tmp_path):
    env = base_env(tmp_path, LLMAGENTOS_PROFILE="local", **_production_secrets())

    result = manage("check", env=env)

    assert result.returncode == 0, describe(result)
    assert not (tmp_path / "secret_key").exists()
    assert not (tmp_path / "master_keys").exists()
    assert "WARNING" not in result.stderr


def test_an_unknown_profile_is_refused(tmp_path):
    result = manage("check", env=base_env(tmp_path, LLMAGENTOS_PROFILE="staging"))

    assert result.returncode != 0, describe(result)
    assert "LLMAGENTOS_PROFILE" in result.stderr
    assert "staging" in result.stderr
