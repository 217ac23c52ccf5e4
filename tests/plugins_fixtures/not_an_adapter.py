"""Registers a class that does not derive from ModelAdapter."""

from apps.catalog.plugins import PluginConfig


class LooksLikeAnAdapter:
    name = "impostor"

    def stream(self, request):
        return iter(())


plugin = PluginConfig(
    name="not_an_adapter", version="1.0.0", min_platform_version="0.1.0", adapters=(LooksLikeAnAdapter,)
)
