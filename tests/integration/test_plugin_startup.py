"""A bad plugin stops start-up: a real ``manage.py`` process exits non-zero, naming it."""

from __future__ import annotations

import pytest

from tests.integration.manage_cli import base_env, describe, manage


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("plugin-startup")


def test_start_up_succeeds_with_the_echo_plugin(data_dir):
    result = manage("check", env=base_env(data_dir, LLMAGENTOS_PLUGINS="plugins.echo"))

    assert result.returncode == 0, describe(result)


@pytest.mark.parametrize(
    ("module", "words"),
    [
        ("tests.plugins_fixtures.malformed", ["tests.plugins_fixtures.malformed", "malformed"]),
        ("tests.plugins_fixtures.too_new", ["too_new", "99.0.0"]),
        ("tests.plugins_fixtures.needs_setting", ["needs_setting", "api_base"]),
        ("plugins.no_such_plugin_here", ["plugins.no_such_plugin_here"]),
    ],
)
def test_start_up_stops_on_a_bad_plugin_and_names_it(data_dir, module, words):
    result = manage("check", env=base_env(data_dir, LLMAGENTOS_PLUGINS=f"plugins.echo,{module}"))

    assert result.returncode != 0, describe(result)
    assert "ImproperlyConfigured" in result.stderr
    for word in words:
        assert word in result.stderr, describe(result)
    assert "System check identified" not in result.stdout + result.stderr  # it never got that far
