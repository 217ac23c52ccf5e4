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
