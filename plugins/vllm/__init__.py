"""The vllm plugin: serves a local model directory with vLLM's AsyncLLM on GPU workers.

vLLM itself is installed only on GPU workers (requirements-gpu.txt); this
package imports without it, so every process can register the adapter and
only a worker that loads a model needs vLLM. Settings in
PLUGINS_CONFIG["vllm"] (all optional) are worker-wide defaults for the engine
keys a model's adapter_config may set: dtype, gpu_memory_utilization,
max_model_len, tensor_parallel_size. See plugins/vllm/config.py for every key.
"""

from apps.catalog.plugins import PluginConfig
from plugins.vllm.adapter import VllmAdapter

plugin = PluginConfig(
    name="vllm",
    version="1.0.0",
    min_platform_version="0.1.0",
    adapters=(VllmAdapter,),
)
