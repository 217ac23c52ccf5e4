"""The production profile answers only to the host names the operator gives.

A real ``manage.py`` process per profile: production's ALLOWED_HOSTS is
exactly the ALLOWED_HOSTS variable (no localhost, no testserver: a request
with a forged Host must not be served), and it refuses to start without
one; the local profile keeps its loopback names for ``make run``.
"""

from __future__ import annotations

import json

from tests.integration.manage_cli import PRODUCTION_HOST, base_env, describe, production_env, shell

PRINT_ALLOWED_HOSTS = "from django.conf import settings; import json; print(json.dumps(settings.ALLOWED_HOSTS))"


def _allowed_hosts(env: dict[str, str]) -> list[str]:
    result = shell(PRINT_ALLOWED_HOSTS, env=env)
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)


def test_production_allows_only_the_configured_hosts(tmp_path):
    assert _allowed_hosts(production_env(tmp_path)) == [PRODUCTION_HOST]
    assert _allowed_hosts(production_env(tmp_path, ALLOWED_HOSTS="a.example.com, b.example.com")) == [
        "a.example.com",
        "b.example.com",
    ]


def test_production_refuses_to_start_without_allowed_hosts(tmp_path):
    result = shell(PRINT_ALLOWED_HOSTS, env=production_env(tmp_path, ALLOWED_HOSTS=None))

    assert result.returncode != 0, describe(result)
    assert "ALLOWED_HOSTS must be set in the production profile" in result.stderr, describe(result)


def test_the_local_profile_keeps_its_loopback_names(tmp_path):
    hosts = _allowed_hosts(base_env(tmp_path, LLMAGENTOS_PROFILE="local", ALLOWED_HOSTS="extra.example.com"))

    assert {"127.0.0.1", "localhost", "testserver", "extra.example.com"} <= set(hosts)
