"""Malformed: it forgets the ``plugin = PluginConfig(...)`` the registry looks for."""

PLUGIN_NAME = "malformed"
version = "1.0.0"
