"""The plugin registry: loaded once at start-up, validated, then closed.

A plugin is a package under plugins/ (or an installed distribution declaring
an entry point in the ``llmagentos.plugins`` group) whose top level defines
``plugin = PluginConfig(...)``. settings.LLMAGENTOS_PLUGINS lists the enabled
ones; settings.PLUGINS_CONFIG[name] holds each plugin's settings. Anything
unknown or malformed stops start-up with an error that names the plugin.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from apps.catalog.adapters import ModelAdapter
from apps.core.version import VERSION

ENTRY_POINT_GROUP = "llmagentos.plugins"


@dataclass(frozen=True)
class PluginConfig:
    name: str
    version: str
    min_platform_version: str
    max_platform_version: str | None = None
    required_settings: tuple[str, ...] = ()
    default_settings: Mapping[str, Any] = field(default_factory=dict)
    adapters: tuple[type[ModelAdapter], ...] = ()


@dataclass(frozen=True)
class LoadedPlugin:
    config: PluginConfig
    settings: Mapping[str, Any]


class PluginRegistry:
    """Adapters by name; read-only once ``load`` has run."""

    def __init__(self) -> None:
        self._plugins: Mapping[str, LoadedPlugin] = MappingProxyType({})
        self._adapters: Mapping[str, tuple[type[ModelAdapter], LoadedPlugin]] = MappingProxyType({})
        self._closed = False

    def load(self, dotted_names: list[str], plugins_config: Mapping[str, Mapping[str, Any]]) -> None:
        if self._closed:
            raise RuntimeError("the plugin registry is closed after start-up")
        plugins: dict[str, LoadedPlugin] = {}
        adapters: dict[str, tuple[type[ModelAdapter], LoadedPlugin]] = {}
        for dotted in dotted_names:
            config = _import_plugin(dotted)
            _validate(dotted, config)
            if config.name in plugins:
                raise ImproperlyConfigured(f"plugin {config.name!r} is listed twice")
            missing = [k for k in config.required_settings if k not in plugins_config.get(config.name, {})
                       and k not in config.default_settings]
            if missing:
                raise ImproperlyConfigured(
                    f"plugin {config.name!r} requires settings {missing} in PLUGINS_CONFIG[{config.name!r}]"
                )
            loaded = LoadedPlugin(
                config=config,
                settings=MappingProxyType({**config.default_settings, **plugins_config.get(config.name, {})}),
            )
            plugins[config.name] = loaded
            for adapter in config.adapters:
                if adapter.name in adapters:
                    raise ImproperlyConfigured(
                        f"plugin {config.name!r}: adapter {adapter.name!r} is already registered"
                    )
                adapters[adapter.name] = (adapter, loaded)
        self._plugins = MappingProxyType(plugins)
        self._adapters = MappingProxyType(adapters)
        self._closed = True

    @property
    def adapter_names(self) -> list[str]:
        return sorted(self._adapters)

    def create_adapter(self, adapter_name: str, config: Mapping[str, Any]) -> ModelAdapter:
        """A new instance, created and never loaded: ``__init__`` validates ``config``
        (AdapterConfigError names the key at fault). LookupError: no such adapter."""
        adapter_class, loaded = self._registered(adapter_name)
        return adapter_class(dict(config), dict(loaded.settings))

    def adapter_class(self, adapter_name: str) -> type[ModelAdapter]:
        """The class registered as ``adapter_name`` (LookupError: none is)."""
        return self._registered(adapter_name)[0]

    def _registered(self, adapter_name: str) -> tuple[type[ModelAdapter], LoadedPlugin]:
        try:
            return self._adapters[adapter_name]
        except KeyError:
            registered = ", ".join(self.adapter_names) or "none"
            raise LookupError(f"no adapter named {adapter_name!r} is registered (registered: {registered})") from None


def _import_plugin(dotted: str) -> PluginConfig:
    try:
        module = importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name != dotted and not dotted.startswith(f"{exc.name}."):
            raise ImproperlyConfigured(f"plugin {dotted!r} failed to import: {exc}") from exc
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.name == dotted:
                module = entry_point.load()
                break
        else:
            raise ImproperlyConfigured(f"plugin {dotted!r} is unknown: no such module or entry point") from exc
    except Exception as exc:  # an import-time crash in a plugin must name it
        raise ImproperlyConfigured(f"plugin {dotted!r} failed to import: {exc}") from exc
    config = getattr(module, "plugin", module)
    if not isinstance(config, PluginConfig):
        raise ImproperlyConfigured(f"plugin {dotted!r} is malformed: it defines no 'plugin = PluginConfig(...)'")
    return config


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise ValueError(f"not a dotted numeric version: {version!r}") from None


def _validate(dotted: str, config: PluginConfig) -> None:
    label = f"plugin {config.name or dotted!r}"
    if not config.name or not isinstance(config.name, str):
        raise ImproperlyConfigured(f"plugin {dotted!r} is malformed: it has no name")
    try:
        platform = _version_tuple(VERSION)
        _version_tuple(config.version)
        if platform < _version_tuple(config.min_platform_version):
            raise ImproperlyConfigured(
                f"{label} needs platform >= {config.min_platform_version}, this is {VERSION}"
            )
        if config.max_platform_version and platform > _version_tuple(config.max_platform_version):
            raise ImproperlyConfigured(
                f"{label} supports platform <= {config.max_platform_version}, this is {VERSION}"
            )
    except ValueError as exc:
        raise ImproperlyConfigured(f"{label} is malformed: {exc}") from exc
    for adapter in config.adapters:
        if not (isinstance(adapter, type) and issubclass(adapter, ModelAdapter)):
            raise ImproperlyConfigured(f"{label} is malformed: {adapter!r} is not a ModelAdapter subclass")
        if not isinstance(getattr(adapter, "name", None), str) or not adapter.name:
            raise ImproperlyConfigured(f"{label} is malformed: adapter {adapter.__name__} has no name")


registry = PluginRegistry()
