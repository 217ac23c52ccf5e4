"""``manage.py set_plan``, run as an operator runs it: the resulting plan as one
JSON line on stdout, reasons on stderr, non-zero exit on failure. New tenants
start on the default plan; set_plan changes one tenant's limits only."""

from __future__ import annotations

import json

import pytest

from tests.integration.manage_cli import describe, manage, migrated_database


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    with migrated_database(tmp_path_factory.mktemp("set-plan")) as env:
        for name in ("Acme", "Globex"):
            created = manage("create_tenant", name, env=env)
            assert created.returncode == 0, describe(created)
        yield env


def _plan(env, slug: str, *options: str) -> dict:
    result = manage("set_plan", slug, *options, env=env)
    assert result.returncode == 0, describe(result)
    assert result.stdout.count("\n") == 1, describe(result)  # one line: the result
    return json.loads(result.stdout)


def test_a_new_tenant_is_on_the_default_plan(cli_env):
    created = manage("create_tenant", "Initech", env=cli_env)
    assert created.returncode == 0, describe(created)

    plan = _plan(cli_env, "initech")

    assert plan == {
        "tenant": "initech",
        "plan": "default",
        "rpm": 600,
        "tpm": 1_000_000,
        "budget_tokens": None,
        "budget_period": "month",
        "max_running": 64,
        "max_queued": 1000,
        "weight": 1.0,
        "max_priority": "interactive",
    }


def test_set_plan_changes_the_given_limits_of_that_tenant_only(cli_env):
    plan = _plan(
        cli_env, "acme",
        "--rpm", "30", "--tpm", "5000", "--budget-tokens", "100000", "--max-running", "2",
        "--max-queued", "20", "--weight", "2.5", "--max-priority", "normal",
    )

    assert plan["tenant"] == "acme"
    assert plan["plan"] != "default"  # acme got a plan of its own
    wanted = {
        "rpm": 30, "tpm": 5000, "budget_tokens": 100000, "max_running": 2, "max_queued": 20, "weight": 2.5,
        "max_priority": "normal",
    }
    assert {field: plan[field] for field in wanted} == wanted
    # Reading it back shows the same; a later change keeps the other limits.
    assert _plan(cli_env, "acme") == plan
    assert _plan(cli_env, "acme", "--rpm", "unlimited") == plan | {"rpm": None}
    # Globex shares no plan with acme.
    globex = _plan(cli_env, "globex")
    assert (globex["plan"], globex["rpm"], globex["max_priority"]) == ("default", 600, "interactive")


def test_an_unknown_tenant_fails_with_the_reason_on_stderr(cli_env):
    result = manage("set_plan", "nobody", "--rpm", "5", env=cli_env)

    assert result.returncode != 0
    assert result.stdout == ""
    assert "nobody" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--rpm", "-1", "rpm"),
        ("--budget-tokens", "lots", "budget-tokens"),
        ("--weight", "0", "weight"),
        ("--weight", "nan", "weight"),
        ("--max-priority", "urgent", "max-priority"),
    ],
)
def test_an_invalid_value_fails_and_changes_nothing(cli_env, option, value, named):
    before = _plan(cli_env, "globex")

    result = manage("set_plan", "globex", option, value, env=cli_env)

    assert result.returncode != 0, describe(result)
    assert result.stdout == ""
    assert named.replace("-", "_") in result.stderr.replace("-", "_"), describe(result)
    assert _plan(cli_env, "globex") == before
