"""A prompt's token count before it runs, as the model's own adapter counts it.

Admission (apps.scheduler.admission) reserves a task's budget by this count
plus ``max_tokens``; where it is None (the adapter cannot count, or cannot in
this process) admission falls back to its characters ÷ 4 estimate.

Counting needs an adapter instance in the API process. It is created with the
model's (or the version's) effective config and never loaded, so no weights
are read; an adapter that counts reads its tokenizer on first use and keeps
it. Instances are kept per adapter and config — a model, or one version of
it — in a small per-process LRU, so the tokenizer is read once per process
and model version, and an operator's config change gets a fresh instance.
An adapter class that does not override ``count_prompt_tokens`` is never
instantiated here (a remote adapter would open a connection pool for nothing).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from apps.catalog.adapters import ChatMessage, ModelAdapter
from apps.catalog.artifacts import ArtifactError
from apps.catalog.plugins import registry
from apps.catalog.resources import effective_adapter_config

if TYPE_CHECKING:
    from apps.catalog.models import LLMModel, ModelVersion

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4

# Counting adapters kept per process: a tokenizer is a few MB; a process
# serving more models than this re-reads the least recently used one's.
CACHE_SIZE = 32

# (adapter name, effective config as JSON) → the counting instance, or None
# when the adapter refused that config here (remembered, so a bad config is
# tried and logged once, not on every request).
_counters: OrderedDict[tuple[str, str], ModelAdapter | None] = OrderedDict()
_lock = threading.Lock()


def count_prompt_tokens(
    model: LLMModel,
    version: ModelVersion | None,
    prompt: str | None,
    messages: Sequence[dict[str, str]] | None,
) -> int | None:
    """The token count ``model`` (at ``version``) will report for this prompt, or None: unknown."""
    try:
        adapter_class = registry.adapter_class(model.adapter)
    except LookupError:
        return None
    if adapter_class.count_prompt_tokens is ModelAdapter.count_prompt_tokens:
        return None
    adapter = _counter(model, version)
    if adapter is None:
        return None
    chat = None if messages is None else tuple(ChatMessage(m["role"], m["content"]) for m in messages)
    try:
        counted = adapter.count_prompt_tokens(prompt, chat)
    except Exception:  # a plugin's bug must not refuse the task: the estimate stands in
        logger.exception("model %s: the %r adapter failed to count a prompt", model.name, model.adapter)
        return None
    if counted is None:
        return None
    if isinstance(counted, bool) or not isinstance(counted, int) or counted < 0:
        logger.warning("model %s: the %r adapter counted %r prompt tokens; ignored", model.name, model.adapter, counted)
        return None
    return counted


def _counter(model: LLMModel, version: ModelVersion | None) -> ModelAdapter | None:
    try:
        config = effective_adapter_config(model, version)
    except ArtifactError:
        return None  # a bad artifact URI: the task fails when it runs, and says why
    key = (model.adapter, json.dumps(config, sort_keys=True, default=str))
    with _lock:
        if key in _counters:
            _counters.move_to_end(key)
            return _counters[key]
    # Created outside the lock: an adapter's __init__ may touch the disk. Two
    # threads may both create one; the first stored is kept.
    try:
        created: ModelAdapter | None = registry.create_adapter(model.adapter, config)
    except Exception as exc:  # AdapterConfigError, or whatever a plugin raises
        logger.warning(
            "model %s: its %r adapter cannot count prompts in this process (%s); admission estimates them",
            model.name, model.adapter, exc,
        )
        created = None
    with _lock:
        adapter = _counters.setdefault(key, created)
        _counters.move_to_end(key)
        while len(_counters) > CACHE_SIZE:
            _counters.popitem(last=False)
    return adapter


def estimate_prompt_tokens(prompt: str | None, messages: list[dict[str, str]] | None) -> int:
    """The prompt's tokens where the model's adapter cannot count them (a remote model, a
    tokenizer this process cannot read): characters / 4, rounded up, over the prompt or
    all messages' contents — the usual rule of thumb for English text with BPE tokenizers.

    It undercounts chat templates, code and other scripts; the task is charged its
    real usage anyway (``settle_task``), so a low estimate only reserves too little.
    """
    texts = [prompt] if prompt is not None else [message["content"] for message in messages or ()]
    return math.ceil(sum(len(text) for text in texts) / CHARS_PER_TOKEN)
