"""The plugin registry: what it accepts, what it refuses (naming the plugin), and that it closes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

import llmagentos
from apps.catalog.adapters import GenerationRequest, TextChunk, Usage
from apps.catalog.plugins import PluginRegistry, registry
from plugins.echo.adapter import EchoAdapter

FIXTURES = "tests.plugins_fixtures"


def _load(*dotted: str, config: dict | None = None) -> PluginRegistry:
    fresh = PluginRegistry()
    fresh.load(list(dotted), config or {})
    return fresh


def _refused(*dotted: str, config: dict | None = None) -> str:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        _load(*dotted, config=config)
    return str(excinfo.value)


# --- accepted ---------------------------------------------------------------------


def test_echo_plugin_loads_and_exposes_its_adapter():
    loaded = _load("plugins.echo")

    assert loaded.adapter_names == ["echo"]
    adapter = loaded.create_adapter("echo", {})
    assert isinstance(adapter, EchoAdapter)
    # The plugin's default settings reach the adapter.
    assert adapter.plugin_settings == {"words_per_second": 0.0}
    request = GenerationRequest(request_id="r1", prompt="hello plugin world", messages=None, max_tokens=10)
    items = list(adapter.stream(request))
    assert [i.text for i in items if isinstance(i, TextChunk)] == ["hello ", "plugin ", "world"]
    assert items[-1] == Usage(prompt_tokens=3, completion_tokens=3)


def test_start_up_loaded_the_configured_plugins():
    assert "echo" in registry.adapter_names


def test_an_unregistered_adapter_name_is_a_lookup_error():
    loaded = _load("plugins.echo")

    with pytest.raises(LookupError, match="'nosuch'"):
        loaded.create_adapter("nosuch", {})


def test_required_settings_come_from_plugins_config_or_defaults():
    loaded = _load(f"{FIXTURES}.needs_setting", config={"needs_setting": {"api_base": "http://127.0.0.1:9"}})

    adapter = loaded.create_adapter("needs_setting_adapter", {})
    assert adapter.plugin_settings == {"api_base": "http://127.0.0.1:9", "timeout": 30}


def test_an_empty_plugin_list_loads_nothing():
    assert _load().adapter_names == []


# --- closed after load ----------------------------------------------------------------


def test_the_registry_is_closed_after_loading():
    loaded = _load("plugins.echo")

    with pytest.raises(RuntimeError, match="closed"):
        loaded.load([f"{FIXTURES}.needs_setting"], {"needs_setting": {"api_base": "x"}})
    assert loaded.adapter_names == ["echo"]


def test_the_start_up_registry_is_closed():
    with pytest.raises(RuntimeError, match="closed"):
        registry.load(["plugins.echo"], {})


# --- refused, naming the plugin ---------------------------------------------------------


def test_an_unknown_dotted_name_is_refused_by_name():
    message = _refused("plugins.echo", "plugins.no_such_plugin_here")

    assert "plugins.no_such_plugin_here" in message
    assert "unknown" in message


def test_a_plugin_whose_dependency_is_missing_is_not_called_unknown():
    message = _refused(f"{FIXTURES}.missing_dependency")

    assert f"{FIXTURES}.missing_dependency" in message
    assert "llmagentos_no_such_dependency" in message
    assert "unknown" not in message


def test_a_plugin_that_crashes_on_import_is_refused_by_name():
    message = _refused(f"{FIXTURES}.crashes_on_import")

    assert f"{FIXTURES}.crashes_on_import" in message
    assert "boom while importing" in message


@pytest.mark.parametrize("module", ["malformed", "wrong_type"])
def test_a_module_without_a_plugin_config_is_malformed(module):
    message = _refused(f"{FIXTURES}.{module}")

    assert "malformed" in message
    assert f"{FIXTURES}.{module}" in message


def test_a_plugin_needing_a_newer_platform_is_refused():
    message = _refused(f"{FIXTURES}.too_new")

    assert "too_new" in message
    assert "99.0.0" in message
    assert llmagentos.VERSION in message


def test_a_plugin_supporting_only_older_platforms_is_refused():
    message = _refused(f"{FIXTURES}.too_old")

    assert "too_old" in message
    assert "0.0.9" in message


def test_a_non_numeric_version_bound_is_malformed():
    message = _refused(f"{FIXTURES}.bad_version")

    assert "bad_version" in message
    assert "malformed" in message


def test_a_missing_required_setting_is_refused_naming_plugin_and_setting():
    message = _refused(f"{FIXTURES}.needs_setting")

    assert "needs_setting" in message
    assert "api_base" in message
    # "timeout" has a default, so it is not reported missing.
    assert "timeout" not in message


def test_settings_for_another_plugin_do_not_satisfy_a_requirement():
    message = _refused(f"{FIXTURES}.needs_setting", config={"echo": {"api_base": "http://127.0.0.1:9"}})

    assert "api_base" in message


def test_an_adapter_that_is_not_a_model_adapter_subclass_is_refused():
    message = _refused(f"{FIXTURES}.not_an_adapter")

    assert "not_an_adapter" in message
    assert "ModelAdapter" in message


def test_an_adapter_without_a_name_is_refused():
    message = _refused(f"{FIXTURES}.nameless_adapter")

    assert "nameless_adapter" in message
    assert "NamelessAdapter" in message


def test_two_plugins_registering_the_same_adapter_name_are_refused():
    message = _refused("plugins.echo", f"{FIXTURES}.duplicate_echo")

    assert "duplicate_echo" in message
    assert "'echo'" in message


def test_the_same_plugin_listed_twice_is_refused():
    message = _refused("plugins.echo", "plugins.echo")

    assert "'echo'" in message
    assert "twice" in message


def test_a_refused_load_leaves_the_registry_open_and_empty():
    fresh = PluginRegistry()
    with pytest.raises(ImproperlyConfigured):
        fresh.load(["plugins.echo", f"{FIXTURES}.too_new"], {})

    assert fresh.adapter_names == []
    fresh.load(["plugins.echo"], {})
    assert fresh.adapter_names == ["echo"]
