"""Supports only platforms older than this one."""

from apps.catalog.plugins import PluginConfig

plugin = PluginConfig(name="too_old", version="1.0.0", min_platform_version="0.0.1", max_platform_version="0.0.9")
