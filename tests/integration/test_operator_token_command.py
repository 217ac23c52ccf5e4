"""``manage.py create_operator_token USERNAME``: prints a token once, for staff
users only; the token opens /api/v1/ops/ and only its hash is stored."""

from __future__ import annotations

import re

import pytest

from tests.integration.manage_cli import describe, manage, migrated_database, shell

TOKEN_LINE = re.compile(r"llo_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}\n")


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    with migrated_database(tmp_path_factory.mktemp("operator-token")) as env:
        made = shell(
            "from django.contrib.auth import get_user_model\n"
            "User = get_user_model()\n"
            "User.objects.create_user('ops', is_staff=True)\n"
            "User.objects.create_user('member')\n",
            env=env,
        )
        assert made.returncode == 0, describe(made)
        yield env


def test_a_staff_user_gets_a_token_printed_once_and_stored_hashed(cli_env):
    result = manage("create_operator_token", "ops", env=cli_env)

    assert result.returncode == 0, describe(result)
    assert TOKEN_LINE.fullmatch(result.stdout), describe(result)
    token = result.stdout.strip()
    check = shell(
        "import hashlib\n"
        "from apps.security.models import OperatorToken\n"
        "from apps.security.services import find_operator_token\n"
        f"token = {token!r}\n"
        "row = OperatorToken.objects.get(prefix=token.split('_')[1])\n"
        "print(row.user.username, row.token_hash == hashlib.sha256(token.encode()).hexdigest(),\n"
        "      any(token in str(v) for v in OperatorToken.objects.values().get(pk=row.pk).values()),\n"
        "      find_operator_token(token) is not None)\n",
        env=cli_env,
    )
    assert check.returncode == 0, describe(check)
    assert check.stdout.split() == ["ops", "True", "False", "True"]


def test_a_user_who_is_not_staff_gets_no_token(cli_env):
    result = manage("create_operator_token", "member", env=cli_env)

    assert result.returncode != 0
    assert result.stdout == ""
    assert "staff" in result.stderr


def test_an_unknown_user_gets_no_token(cli_env):
    result = manage("create_operator_token", "ghost", env=cli_env)

    assert result.returncode != 0
    assert result.stdout == ""
    assert "ghost" in result.stderr
