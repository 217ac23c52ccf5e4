"""The openai_compatible plugin: models served by a remote OpenAI-compatible API.

A vLLM server, a hosted API, any server speaking OpenAI's streaming chat or
completions protocol. The remote holds the model; workers only stream from it.
See docs/plugins.md ("Shipped plugins") for the adapter_config keys.
"""

from apps.catalog.plugins import PluginConfig
from plugins.openai_compatible.adapter import DEFAULT_SETTINGS, OpenAICompatibleAdapter

plugin = PluginConfig(
    name="openai_compatible",
    version="1.0.0",
    min_platform_version="0.1.0",
    default_settings=dict(DEFAULT_SETTINGS),
    adapters=(OpenAICompatibleAdapter,),
)
