"""Malformed: ``plugin`` is a plain dict, not a PluginConfig."""

plugin = {"name": "wrong_type", "version": "1.0.0", "min_platform_version": "0.1.0"}
