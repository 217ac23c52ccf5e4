"""Operator commands, run as an operator runs them: a real ``manage.py`` process.

Contract (ARCHITECTURE.md): only the result on stdout, messages on stderr,
non-zero exit on failure.
"""

from __future__ import annotations

import os
import re

import pytest
from cryptography.fernet import Fernet

from tests.integration.manage_cli import describe, manage, migrated_database, shell

KEY_LINE = re.compile(r"lla_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}\n")


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """One migrated database (SQLite file or fresh PostgreSQL database) for this module."""
    with migrated_database(tmp_path_factory.mktemp("operator-commands")) as env:
        yield env


def test_create_tenant_prints_only_the_slug(cli_env):
    result = manage("create_tenant", "Acme Corp", env=cli_env)

    assert result.returncode == 0, describe(result)
    assert result.stdout == "acme-corp\n"

    # The tenant exists, under the given name, and sees the public models.
    check = shell(
        "from apps.tenants.models import Tenant\n"
        "from apps.catalog.models import LLMModel\n"
        "t = Tenant.objects.get(slug='acme-corp')\n"
        "print(t.name)\n"
        "print(','.join(sorted(LLMModel.objects.visible_to(t).values_list('name', flat=True))))\n",
        env=cli_env,
    )
    assert check.returncode == 0, describe(check)
    name, visible = check.stdout.splitlines()
    assert name == "Acme Corp"
    assert "echo" in visible.split(",")


def test_create_tenant_twice_fails_with_the_reason_on_stderr(cli_env):
    first = manage("create_tenant", "Initech", env=cli_env)
    assert first.returncode == 0, describe(first)
    assert first.stdout == "initech\n"

    again = manage("create_tenant", "Initech", env=cli_env)

    assert again.returncode != 0, describe(again)
    assert again.stdout == ""
    assert "initech" in again.stderr
    assert "exists" in again.stderr
    assert "Traceback" not in again.stderr  # a clear message, not a crash


def test_create_tenant_with_an_unusable_name_fails(cli_env):
    result = manage("create_tenant", "   ", env=cli_env)

    assert result.returncode != 0, describe(result)
    assert result.stdout == ""
    assert "name" in result.stderr


def test_create_api_key_prints_one_key_that_authenticates_with_every_scope(cli_env):
    tenant = manage("create_tenant", "Key Holder", env=cli_env)
    assert tenant.stdout == "key-holder\n", describe(tenant)

    result = manage("create_api_key", "key-holder", env=cli_env)

    assert result.returncode == 0, describe(result)
    assert KEY_LINE.fullmatch(result.stdout), result.stdout
    key = result.stdout.strip()

    check = shell(
        "from apps.tenants.services import find_api_key\n"
        "from apps.tenants.models import ALL_SCOPES\n"
        f"k = find_api_key({key!r})\n"
        "print(k.tenant.slug if k else 'NO KEY')\n"
        "print(sorted(k.scopes) == sorted(ALL_SCOPES) if k else 'NO KEY')\n"
        # A wrong secret with the same prefix must not authenticate.
        f"print(find_api_key({key[:-1] + ('A' if key[-1] != 'A' else 'B')!r}))\n",
        env=cli_env,
    )
    assert check.returncode == 0, describe(check)
    assert check.stdout.splitlines() == ["key-holder", "True", "None"]


def test_create_api_key_gives_a_new_key_each_time(cli_env):
    manage("create_tenant", "Two Keys", env=cli_env)

    first = manage("create_api_key", "two-keys", env=cli_env)
    second = manage("create_api_key", "two-keys", env=cli_env)

    assert first.returncode == second.returncode == 0, describe(first) + describe(second)
    assert first.stdout != second.stdout


def test_create_api_key_for_an_unknown_tenant_fails(cli_env):
    result = manage("create_api_key", "nosuch", env=cli_env)

    assert result.returncode != 0, describe(result)
    assert result.stdout == ""
    assert "nosuch" in result.stderr


def _new_master_key() -> str:
    return Fernet.generate_key().decode()


# Run under the OLD master key: two tenants, and a value encrypted with one's data key.
_SETUP_UNDER_OLD = (
    "from apps.tenants.services import create_tenant\n"
    "create_tenant('Rot One'); create_tenant('Rot Two')\n"
    "from apps.tenants.models import Tenant\n"
    "print(Tenant.objects.get(slug='rot-one').cipher.encrypt_json({'secret': 'kept across rotation'}).decode())\n"
)


def _state(token: str) -> str:
    """Prints each tenant's wrapped key, then whether rot-one's data reads under the current keys."""
    return (
        "from apps.tenants.models import Tenant\n"
        "from apps.security.crypto import DecryptionError\n"
        "for t in Tenant.objects.order_by('slug'):\n"
        "    print(t.slug, bytes(t.wrapped_data_key).hex())\n"
        "try:\n"
        f"    print(Tenant.objects.get(slug='rot-one').cipher.decrypt_json({token!r}.encode())['secret'])\n"
        "except DecryptionError:\n"
        "    print('UNREADABLE')\n"
    )


def test_rotate_master_keys_rewraps_every_tenant_key(tmp_path):
    old, new = _new_master_key(), _new_master_key()
    # Its own database: rotation rewrites every tenant row, and the other tests'
    # tenants are wrapped with a different (generated) master key.
    with migrated_database(tmp_path / "rotation") as env:
        under_old = {**env, "MASTER_KEYS": old}
        under_new = {**env, "MASTER_KEYS": new}
        under_both = {**env, "MASTER_KEYS": f"{new},{old}"}
        setup = shell(_SETUP_UNDER_OLD, env=under_old)
        assert setup.returncode == 0, describe(setup)
        token = setup.stdout.strip()
        # "rot-a" is wrapped with the new key already (and is re-wrapped first, in slug order).
        assert manage("create_tenant", "Rot A", env=under_new).stdout == "rot-a\n"

        initial = shell(_state(token), env=under_new)
        assert initial.returncode == 0, describe(initial)
        assert initial.stdout.endswith("\nUNREADABLE\n"), "the new key alone cannot read data yet"

        # Without the old key: refused, clearly, and all or nothing (rot-a untouched too).
        refused = manage("rotate_master_keys", env=under_new)
        assert refused.returncode != 0, describe(refused)
        assert refused.stdout == ""
        assert "rot-one" in refused.stderr
        assert "MASTER_KEYS" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert shell(_state(token), env=under_new).stdout == initial.stdout

        # New key first, old after it: every tenant re-wrapped, the count on stdout.
        rotated = manage("rotate_master_keys", env=under_both)
        assert rotated.returncode == 0, describe(rotated)
        assert rotated.stdout == "3\n"

        # The old key can be retired: the new one alone reads what was written before.
        after = shell(_state(token), env=under_new)
        assert after.returncode == 0, describe(after)
        wrapped_before = initial.stdout.splitlines()[:3]
        wrapped_after = after.stdout.splitlines()[:3]
        assert [line.split()[0] for line in wrapped_after] == ["rot-a", "rot-one", "rot-two"]
        assert all(b != a for b, a in zip(wrapped_before, wrapped_after, strict=True))
        assert after.stdout.splitlines()[3] == "kept across rotation"


def test_manage_cli_uses_its_own_database(cli_env):
    """Guard for the fixture itself: the subprocess never sees the runner's database."""
    assert cli_env["DATA_DIR"] != os.environ.get("DATA_DIR")
    if os.environ.get("DATABASE_URL"):
        assert cli_env["DATABASE_URL"] != os.environ["DATABASE_URL"]
