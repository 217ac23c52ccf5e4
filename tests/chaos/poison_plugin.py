"""A test-only plugin: the "poison" adapter, whose every attempt fails.

``adapter_config {"mode": "raise"}``: each attempt raises a transient
AdapterError (the platform retries it); ``"crash"``: each attempt SIGKILLs the
worker process running it, as a segfaulting engine would. Enabled for the
chaos tests' processes through LLMAGENTOS_PLUGINS (tests.chaos.harness).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

from apps.catalog.adapters import AdapterConfigError, AdapterError, GenerationRequest, ModelAdapter, TextChunk, Usage
from apps.catalog.plugins import PluginConfig

MODES = ("raise", "crash")
FAILURE = "poisoned input: this model fails every attempt"


class PoisonAdapter(ModelAdapter):
    name = "poison"

    def __init__(self, config, plugin_settings) -> None:
        super().__init__(config, plugin_settings)
        self.mode = config.get("mode", "raise")
        if self.mode not in MODES:
            raise AdapterConfigError("mode", f"must be one of {', '.join(MODES)}")

    def stream(self, request: GenerationRequest) -> Iterator[TextChunk | Usage]:
        yield TextChunk("partial ")
        if self.mode == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        raise AdapterError(FAILURE)


plugin = PluginConfig(name="poison", version="1.0.0", min_platform_version="0.1.0", adapters=(PoisonAdapter,))
