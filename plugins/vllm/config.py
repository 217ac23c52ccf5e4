"""The vllm adapter's adapter_config: checked once, turned into AsyncEngineArgs keywords.

Keys (a model's adapter_config; the engine keys may also come from the plugin's
settings, which act as worker-wide defaults):

| key | meaning |
|---|---|
| ``model`` | required: an absolute path to a local model directory (never a Hub id: workers do not download) |
| ``dtype`` | "auto" (default), "half", "float16", "bfloat16", "float", "float32" |
| ``gpu_memory_utilization`` | fraction of each GPU vLLM may take (vLLM's default 0.9) |
| ``max_model_len`` | context length cap (default: the model's) |
| ``tensor_parallel_size`` | GPUs per model replica (default 1) |
| ``lora_modules`` | ``{name: absolute path}``; turns LoRA support on |
| ``lora`` | the name in ``lora_modules`` that every request of this model uses |
| ``max_loras``, ``max_lora_rank`` | vLLM's LoRA capacity settings |
| ``gpu_memory_bytes`` | what ``resources()`` reports; default: an estimate from the weights |
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.catalog.adapters import AdapterConfigError
from plugins.vllm.mapping import LoraModule, lora_modules

DTYPES = frozenset({"auto", "half", "float16", "bfloat16", "float", "float32"})

# Engine keys an operator may set once for all models in PLUGINS_CONFIG["vllm"].
PLUGIN_DEFAULT_KEYS = ("dtype", "gpu_memory_utilization", "max_model_len", "tensor_parallel_size")

# Weights are not the whole story (activations, CUDA graphs, the KV cache the
# engine pre-allocates): the platform's placement uses weights x 1.3.
WEIGHTS_OVERHEAD = 1.3


@dataclass(frozen=True)
class EngineSettings:
    model: str
    dtype: str = "auto"
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    loras: Mapping[str, LoraModule] = field(default_factory=dict)
    default_lora: str | None = None
    max_loras: int | None = None
    max_lora_rank: int | None = None
    gpu_memory_bytes: int | None = None

    def engine_args(self) -> dict[str, Any]:
        """Keywords for ``vllm.engine.arg_utils.AsyncEngineArgs``.

        ``scheduling_policy`` is always "priority": with vLLM's default (fcfs) a
        non-zero ``priority`` makes generate() raise ValueError, and the
        platform's classes are passed as priorities on every request.
        """
        args: dict[str, Any] = {
            "model": self.model,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "scheduling_policy": "priority",
        }
        if self.gpu_memory_utilization is not None:
            args["gpu_memory_utilization"] = self.gpu_memory_utilization
        if self.max_model_len is not None:
            args["max_model_len"] = self.max_model_len
        if self.loras:
            args["enable_lora"] = True
            if self.max_loras is not None:
                args["max_loras"] = self.max_loras
            if self.max_lora_rank is not None:
                args["max_lora_rank"] = self.max_lora_rank
        return args


def parse_config(config: Mapping[str, Any], plugin_settings: Mapping[str, Any]) -> EngineSettings:
    """Validate a model's adapter_config; AdapterConfigError names the first bad key."""
    merged = {key: plugin_settings[key] for key in PLUGIN_DEFAULT_KEYS if key in plugin_settings}
    merged.update(config)

    model = merged.get("model")
    if model is None:
        raise AdapterConfigError("model", "is required: the absolute path of a local model directory")
    _check_local_path("model", model)

    dtype = merged.get("dtype", "auto")
    if dtype not in DTYPES:
        raise AdapterConfigError("dtype", f"must be one of {sorted(DTYPES)}")

    utilization = merged.get("gpu_memory_utilization")
    if utilization is not None and (
        isinstance(utilization, bool) or not isinstance(utilization, (int, float)) or not 0 < utilization <= 1
    ):
        raise AdapterConfigError("gpu_memory_utilization", "must be a number in (0, 1]")

    paths = merged.get("lora_modules") or {}
    if not isinstance(paths, Mapping) or not all(isinstance(name, str) and name for name in paths):
        raise AdapterConfigError("lora_modules", "must map LoRA names to local directories")
    for name, path in paths.items():
        _check_local_path(f"lora_modules.{name}", path)
    loras = lora_modules(paths)

    default_lora = merged.get("lora")
    if default_lora is not None and default_lora not in loras:
        raise AdapterConfigError("lora", "must name one of lora_modules")

    return EngineSettings(
        model=model,
        dtype=dtype,
        gpu_memory_utilization=utilization,
        max_model_len=_optional_int(merged, "max_model_len", minimum=1),
        tensor_parallel_size=_optional_int(merged, "tensor_parallel_size", minimum=1) or 1,
        loras=loras,
        default_lora=default_lora,
        max_loras=_optional_int(merged, "max_loras", minimum=1),
        max_lora_rank=_optional_int(merged, "max_lora_rank", minimum=1),
        gpu_memory_bytes=_optional_int(merged, "gpu_memory_bytes", minimum=0),
    )


def estimated_gpu_memory_bytes(model_dir: str) -> int:
    """The weights' size on disk x WEIGHTS_OVERHEAD; 0 when there are none to see.

    A sharded checkpoint's index names exactly the files vLLM loads; some
    repositories ship a consolidated copy as well, which must not count twice.
    """
    directory = Path(model_dir)
    index = directory / "model.safetensors.index.json"
    try:
        if index.is_file():
            names = set(json.loads(index.read_text())["weight_map"].values())
            files = [directory / name for name in names]
        else:
            files = list(directory.glob("*.safetensors"))
        weights = sum(path.stat().st_size for path in files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0  # unreadable here (e.g. not this worker's disk): load() reports the real problem
    return int(weights * WEIGHTS_OVERHEAD)


def _check_local_path(key: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise AdapterConfigError(key, "must be the absolute path of a local directory")
    if not os.path.isabs(value):
        # A relative value is how Hub ids look ("org/name"); vLLM would try to
        # download it, and workers serve only what an operator put on disk.
        raise AdapterConfigError(key, f"must be an absolute local path, not {value!r}")


def _optional_int(config: Mapping[str, Any], key: str, *, minimum: int) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AdapterConfigError(key, f"must be an integer >= {minimum}")
    return value
