"""manage.py add_model, run as an operator runs it: it prints the registered model as
one JSON line, and refuses (non-zero, nothing recorded) an unknown adapter or a config
the adapter rejects, with the adapter's own message."""

from __future__ import annotations

import json

import pytest

from tests.integration.manage_cli import describe, manage, migrated_database, shell


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    with migrated_database(tmp_path_factory.mktemp("add-model")) as env:
        created = manage("create_tenant", "Acme Corp", env=env)
        assert created.returncode == 0, describe(created)
        yield env


def _models(env) -> dict[str, dict]:
    listed = shell(
        "import json\n"
        "from apps.catalog.models import LLMModel\n"
        "print(json.dumps({m.name: {'adapter': m.adapter, 'config': m.adapter_config, 'public': m.is_public,\n"
        "    'tenants': sorted(t.slug for t in m.allowed_tenants.all())} for m in LLMModel.objects.all()}))\n",
        env=env,
    )
    assert listed.returncode == 0, describe(listed)
    return json.loads(listed.stdout)


def test_it_registers_the_model_and_prints_it_as_one_json_line(cli_env):
    result = manage(
        "add_model", "echo-slow", "--adapter", "echo", "--config", '{"words_per_second": 5}',
        "--tenants", "acme-corp", "--description", "a slow echo", env=cli_env,
    )

    assert result.returncode == 0, describe(result)
    (line,) = result.stdout.splitlines()
    printed = json.loads(line)
    assert printed["name"] == "echo-slow" and printed["object"] == "model"
    assert (printed["adapter"], printed["adapter_config"]) == ("echo", {"words_per_second": 5})
    assert (printed["is_public"], printed["tenants"], printed["enabled"]) == (False, ["acme-corp"], True)
    assert printed["description"] == "a slow echo" and printed["current_version"] is None
    assert "registered" in result.stderr
    assert _models(cli_env)["echo-slow"] == {
        "adapter": "echo", "config": {"words_per_second": 5}, "public": False, "tenants": ["acme-corp"]
    }

    public = manage("add_model", "echo-open", "--adapter", "echo", "--public", env=cli_env)
    assert public.returncode == 0, describe(public)
    assert json.loads(public.stdout)["is_public"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adapter", "no-such-adapter"], "no adapter named 'no-such-adapter' is registered"),
        # The adapters' own AdapterConfigError messages, key first.
        (["--adapter", "echo", "--config", '{"words_per_second": -1}'], "words_per_second: must be a number >= 0"),
        (["--adapter", "transformers", "--config", '{"path": "/no/such/model"}'],
         "path: /no/such/model is not a directory"),
        (["--adapter", "echo", "--config", "[1, 2]"], "adapter_config must be a JSON object"),
        (["--adapter", "echo", "--config", "{nope"], "--config is not valid JSON"),
        (["--adapter", "echo", "--tenants", "no-such-tenant"], "no tenant with slug 'no-such-tenant'"),
    ],
    ids=["unknown-adapter", "echo-config", "transformers-config", "not-an-object", "not-json", "unknown-tenant"],
)
def test_a_refused_model_exits_non_zero_with_the_reason_and_records_nothing(cli_env, args, message):
    result = manage("add_model", "refused-model", *args, env=cli_env)

    assert result.returncode != 0, describe(result)
    assert message in result.stderr, describe(result)
    assert result.stdout == ""
    assert "refused-model" not in _models(cli_env)


def test_a_name_in_use_is_refused(cli_env):
    result = manage("add_model", "echo", "--adapter", "echo", env=cli_env)  # the seeded echo model

    assert result.returncode != 0, describe(result)
    assert "a model named 'echo' exists" in result.stderr
    assert result.stdout == ""
