"""Needs a platform far newer than this one."""

from apps.catalog.plugins import PluginConfig

plugin = PluginConfig(name="too_new", version="1.0.0", min_platform_version="99.0.0")
