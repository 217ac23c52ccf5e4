"""The adapters loaded in this worker process: one per queue spec and config,
shared by the slots, unloaded when the placement moves the version away (after
its last stream). Per process, so it lives with the worker runtime."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

from apps.catalog.adapters import AdapterConfigError, ModelAdapter
from apps.catalog.artifacts import ArtifactError
from apps.catalog.models import LLMModel, ModelVersion
from apps.catalog.plugins import registry
from apps.catalog.resources import effective_adapter_config

logger = logging.getLogger(__name__)

@dataclass
class _Loaded:
    adapter: ModelAdapter
    spec: str  # "name" or "name@version": the queue its tasks come from
    users: int = 0  # streams using it now
    retired: bool = False  # out of the cache: unloaded when its last user is done


_adapters: dict[tuple[str, str, str], _Loaded] = {}
_in_use: dict[int, _Loaded] = {}  # by id(adapter): entries with users, retired ones included
_adapters_lock = threading.Lock()


def adapter_for(model: LLMModel, version: ModelVersion | None = None) -> ModelAdapter:
    """This process's loaded adapter for ``model`` at ``version``, one per spec and config.

    Each call takes a use of the adapter: pair it with ``release_adapter`` once
    the stream is done, so a retired adapter is unloaded only when unused.
    """
    spec = version.spec if version is not None else model.name
    try:
        config = effective_adapter_config(model, version)
    except ArtifactError as exc:  # a bad URI typed into the admin: the task fails model_unavailable
        raise AdapterConfigError("artifact_uri", str(exc)) from exc
    key = (spec, model.adapter, json.dumps(config, sort_keys=True))
    stale: list[_Loaded] = []
    with _adapters_lock:
        entry = _adapters.get(key)
        if entry is None:
            adapter = registry.create_adapter(model.adapter, config)
            adapter.load(adapter.resources().device)
            entry = _adapters[key] = _Loaded(adapter=adapter, spec=spec)
            # Another config for the same spec: an operator changed the model
            # (PATCH /api/v1/ops/models, the admin). The old adapter takes no
            # new streams; it is unloaded now, or after its last one.
            _, stale = _take_out(lambda other_key, other: other.spec == spec and other_key != key)
        entry.users += 1
        _in_use[id(entry.adapter)] = entry
    for old in stale:
        _unload(old)
    return entry.adapter


def release_adapter(adapter: ModelAdapter) -> None:
    """A stream that ``adapter_for`` served is done (an adapter not from the cache: nothing to do)."""
    with _adapters_lock:
        entry = _in_use.get(id(adapter))
        if entry is None or entry.adapter is not adapter:
            return
        entry.users -= 1
        if entry.users:
            return
        del _in_use[id(adapter)]
        unload = entry.retired
    if unload:
        _unload(entry)


def retire_adapters(keep: Collection[str]) -> list[str]:
    """Unload every cached adapter whose spec is not in ``keep`` (the specs placed on this
    worker now); one still streaming is unloaded when its last stream ends. Returns the
    retired specs."""
    with _adapters_lock:
        retired, now_unused = _take_out(lambda key, entry: entry.spec not in keep)
    for entry in now_unused:
        _unload(entry)
    return retired


def _take_out(
    matches: Callable[[tuple[str, str, str], _Loaded], bool],
) -> tuple[list[str], list[_Loaded]]:
    """Under ``_adapters_lock``: remove the matching adapters from the cache. Returns their
    specs, and those with no stream now (the caller unloads them outside the lock); the
    others are marked retired, unloaded by ``release_adapter`` after their last stream."""
    retired: list[str] = []
    now_unused: list[_Loaded] = []
    for key, entry in list(_adapters.items()):
        if not matches(key, entry):
            continue
        del _adapters[key]
        retired.append(entry.spec)
        if entry.users:
            entry.retired = True
        else:
            now_unused.append(entry)
    return retired, now_unused


def loaded_specs() -> list[str]:
    """The specs ("name" or "name@version") of the adapters this process has loaded."""
    with _adapters_lock:
        return sorted(entry.spec for entry in _adapters.values())


def _unload(entry: _Loaded) -> None:
    try:
        entry.adapter.unload()
        logger.info("unloaded %s", entry.spec)
    except Exception:  # a plugin failing to unload must not stop the worker
        logger.exception("unloading %s failed", entry.spec)
