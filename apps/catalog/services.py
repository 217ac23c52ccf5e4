"""Looking models up for a tenant, and the adapters that serve them."""

from __future__ import annotations

import json
import threading

from apps.catalog.adapters import ModelAdapter
from apps.catalog.models import LLMModel
from apps.catalog.plugins import registry
from apps.tenants.models import Tenant


def resolve_model_for_tenant(tenant: Tenant, name: str) -> LLMModel | None:
    """The enabled model named ``name`` that ``tenant`` may use, else None.

    Unknown, disabled and not-granted models are indistinguishable to the
    caller, so a tenant cannot learn which private models exist.
    """
    return LLMModel.objects.visible_to(tenant).filter(name=name).first()


_adapters: dict[tuple[str, str, str], ModelAdapter] = {}
_adapters_lock = threading.Lock()


def adapter_for(model: LLMModel) -> ModelAdapter:
    """This process's loaded adapter for ``model`` (one per model and config)."""
    key = (model.name, model.adapter, json.dumps(model.adapter_config, sort_keys=True))
    with _adapters_lock:
        adapter = _adapters.get(key)
        if adapter is None:
            adapter = registry.create_adapter(model.adapter, model.adapter_config)
            adapter.load(adapter.resources().device)
            _adapters[key] = adapter
        return adapter


TINY_MODEL_NAME = "tiny"


def ensure_tiny_model(path) -> LLMModel:
    """Build the tiny local model once under ``path`` and serve it as the public model "tiny".

    An existing "tiny" model is left as the operator configured it.
    """
    from apps.catalog.tiny_model import build_tiny_model  # imports torch: only when asked

    built = build_tiny_model(path)
    model, _ = LLMModel.objects.get_or_create(
        name=TINY_MODEL_NAME,
        defaults={
            "description": "A tiny Llama-architecture model with random weights and a locally trained "
            "tokenizer: real token streaming, meaningless text (by design).",
            "adapter": "transformers",
            "adapter_config": {"path": str(built)},
            "is_public": True,
            "enabled": True,
        },
    )
    return model
