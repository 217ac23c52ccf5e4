"""A version bound that is not a dotted number."""

from apps.catalog.plugins import PluginConfig

plugin = PluginConfig(name="bad_version", version="1.0.0", min_platform_version="zero point one")
