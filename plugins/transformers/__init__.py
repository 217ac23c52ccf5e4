"""The transformers plugin: local Hugging Face causal language models.

Serves a model directory on the worker's disk (config, safetensors weights,
tokenizer), token by token, on CPU or a CUDA GPU. Nothing is downloaded:
models are loaded from local paths only. `manage.py build_tiny_model PATH`
makes a tiny random-weight model to serve with it (its text is meaningless by
design; it exists for tests and measurements).

Importing this package is cheap: torch and transformers are imported only
when a model is loaded, so processes that never serve one never pay for them.
"""

from apps.catalog.plugins import PluginConfig
from plugins.transformers.adapter import DEFAULT_KV_CACHE_BUDGET_BYTES, TransformersAdapter

plugin = PluginConfig(
    name="transformers",
    version="1.0.0",
    min_platform_version="0.1.0",
    # cpu_threads: torch's intra-op threads on CPU workers (0: torch's default,
    # one per core). Process-wide in torch, hence a plugin setting and not a
    # per-model one. Small models run several times faster on 1 thread than on
    # 2 on a 2-core machine (thread hand-off costs more than the matmuls).
    # kv_cache_budget_bytes: bytes of suspended generations' KV caches a model
    # keeps for their resumes (0: none, resumes recompute); a model's
    # adapter_config may set its own.
    default_settings={"cpu_threads": 0, "kv_cache_budget_bytes": DEFAULT_KV_CACHE_BUDGET_BYTES},
    adapters=(TransformersAdapter,),
)
