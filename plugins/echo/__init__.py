"""The echo plugin: streams the prompt back word by word.

It is not a language model. It exists to measure and test the control plane
(admission, scheduling, dispatch, streaming) without a model's cost.
"""

from apps.catalog.plugins import PluginConfig
from plugins.echo.adapter import EchoAdapter

plugin = PluginConfig(
    name="echo",
    version="1.0.0",
    min_platform_version="0.1.0",
    default_settings={"words_per_second": 0.0},
    adapters=(EchoAdapter,),
)
