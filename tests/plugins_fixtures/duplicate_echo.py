"""A second plugin that registers an adapter under the name "echo" again."""

from collections.abc import Iterator

from apps.catalog.adapters import GenerationRequest, ModelAdapter, TextChunk, Usage
from apps.catalog.plugins import PluginConfig


class AnotherEchoAdapter(ModelAdapter):
    name = "echo"

    def stream(self, request: GenerationRequest) -> Iterator[TextChunk | Usage]:
        yield Usage(prompt_tokens=0, completion_tokens=0)


plugin = PluginConfig(
    name="duplicate_echo", version="1.0.0", min_platform_version="0.1.0", adapters=(AnotherEchoAdapter,)
)
