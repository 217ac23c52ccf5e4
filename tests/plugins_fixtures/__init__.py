"""Small plugin modules for the plugin registry tests, each broken in one way.

Loaded by dotted name (``tests.plugins_fixtures.<module>``) with fresh
PluginRegistry instances, and by a real ``manage.py check`` through
LLMAGENTOS_PLUGINS.
"""
