"""Registers a ModelAdapter subclass that forgot to set ``name``."""

from collections.abc import Iterator

from apps.catalog.adapters import GenerationRequest, ModelAdapter, TextChunk, Usage
from apps.catalog.plugins import PluginConfig


class NamelessAdapter(ModelAdapter):
    def stream(self, request: GenerationRequest) -> Iterator[TextChunk | Usage]:
        yield Usage(prompt_tokens=0, completion_tokens=0)


plugin = PluginConfig(
    name="nameless_adapter", version="1.0.0", min_platform_version="0.1.0", adapters=(NamelessAdapter,)
)
