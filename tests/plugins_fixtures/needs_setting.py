"""Needs ``api_base`` from PLUGINS_CONFIG["needs_setting"]; ``timeout`` has a default."""

from collections.abc import Iterator

from apps.catalog.adapters import GenerationRequest, ModelAdapter, TextChunk, Usage
from apps.catalog.plugins import PluginConfig


class NeedsSettingAdapter(ModelAdapter):
    name = "needs_setting_adapter"

    def stream(self, request: GenerationRequest) -> Iterator[TextChunk | Usage]:
        yield Usage(prompt_tokens=0, completion_tokens=0)


plugin = PluginConfig(
    name="needs_setting",
    version="1.0.0",
    min_platform_version="0.1.0",
    required_settings=("api_base", "timeout"),
    default_settings={"timeout": 30},
    adapters=(NeedsSettingAdapter,),
)
