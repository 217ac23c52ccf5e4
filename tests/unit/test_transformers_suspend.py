"""Suspend and resume in the transformers adapter, on the tiny local model (CPU, float32).

A suspended generation's KV cache stays in the adapter's store (bounded by
kv_cache_budget_bytes) and its resume goes on from it; when it is not there
(no budget, pushed out, another worker) one forward pass rebuilds it. Both
paths must give exactly the uninterrupted text and Usage, greedy and with
seeded sampling; the store's counters show which path each resume took.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from apps.catalog.adapters import AdapterConfigError, AdapterError, GenerationRequest, Resume, Suspended
from plugins.transformers.adapter import TransformersAdapter, _IncrementalDecoder
from tests.adapter_contract import (
    assert_suspend_resume_equals_uninterrupted,
    split_stream,
    stream_suspending_after,
)

PROMPT = "The platform schedules tasks"
SETTINGS = {"cpu_threads": 1}  # as in test_transformers_adapter: far faster for a model this small
LARGE = 1 << 30

GREEDY = GenerationRequest(request_id="req-1", prompt=PROMPT, messages=None, max_tokens=24)
SEEDED = dataclasses.replace(GREEDY, temperature=1.0, seed=11)
NUCLEUS = dataclasses.replace(GREEDY, temperature=0.9, top_p=0.8, seed=4)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path, local_files_only=True)


@pytest.fixture(scope="module")
def model_config(tiny_model_path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_model_path, local_files_only=True)


def _adapter(path: str, **config) -> TransformersAdapter:
    adapter = TransformersAdapter({"path": path, "device": "cpu", **config}, SETTINGS)
    adapter.load("cpu")
    return adapter


def _suspend(adapter: TransformersAdapter, request: GenerationRequest, after_chunks: int) -> tuple[str, Suspended]:
    items = stream_suspending_after(adapter, request, after_chunks)
    assert isinstance(items[-1], Suspended), items[-1]
    return "".join(item.text for item in items[:-1]), items[-1]


def _resumed(request: GenerationRequest, text: str, suspended: Suspended) -> GenerationRequest:
    stored = json.loads(json.dumps(suspended.checkpoint))
    return dataclasses.replace(request, resume=Resume(text, stored, suspended.completion_tokens))


def _whole(adapter: TransformersAdapter, request: GenerationRequest):
    chunks, usage = split_stream(list(adapter.stream(request)))
    return "".join(chunks), usage


# --- both paths give the uninterrupted generation ------------------------------------------


@pytest.mark.parametrize("request_", [GREEDY, SEEDED, NUCLEUS], ids=["greedy", "seeded", "nucleus"])
def test_resumes_from_the_kept_kv_cache_equal_the_uninterrupted_generation(tiny_model_path, request_):
    adapter = _adapter(tiny_model_path, kv_cache_budget_bytes=LARGE)

    suspensions = assert_suspend_resume_equals_uninterrupted(adapter, request_, [2, 3, 1])

    assert all(s.checkpoint["cache_key"] for s in suspensions)
    assert adapter.kv_caches.resumed == {"kv_cache": 3, "recompute": 0}
    assert len(adapter.kv_caches) == 0, "each resume took its cache; none outlives the generation"


@pytest.mark.parametrize("budget", [0, 1], ids=["no budget", "budget smaller than a cache"])
@pytest.mark.parametrize("request_", [GREEDY, SEEDED, NUCLEUS], ids=["greedy", "seeded", "nucleus"])
def test_resumes_that_recompute_the_kv_cache_equal_the_uninterrupted_generation(tiny_model_path, request_, budget):
    adapter = _adapter(tiny_model_path, kv_cache_budget_bytes=budget)

    suspensions = assert_suspend_resume_equals_uninterrupted(adapter, request_, [2, 3, 1])

    assert [s.checkpoint["cache_key"] for s in suspensions] == [None, None, None]
    assert adapter.kv_caches.resumed == {"kv_cache": 0, "recompute": 3}
    assert adapter.kv_caches.size_bytes == 0


def test_a_generation_suspended_before_its_first_token_resumes_from_its_prompt(tiny_model_path):
    adapter = _adapter(tiny_model_path, kv_cache_budget_bytes=LARGE)

    suspensions = assert_suspend_resume_equals_uninterrupted(adapter, SEEDED, [0, 0, 4])

    assert [s.completion_tokens for s in suspensions[:2]] == [0, 0]
    assert suspensions[0].checkpoint["cache_key"] is None  # nothing computed yet, nothing to keep


@pytest.mark.parametrize("budget", [LARGE, 0], ids=["kept cache", "recomputed"])
def test_text_held_back_for_a_stop_sequence_travels_in_the_checkpoint(tiny_model_path, budget):
    adapter = _adapter(tiny_model_path, kv_cache_budget_bytes=budget)
    whole = _whole(adapter, SEEDED)[0]  # greedy text from random weights is one token repeated
    # Stops that begin as several points of the text end and never match (the model does not
    # write NUL): text is held back at those points. And one the text does meet, later.
    never = tuple(whole[: end][-2:] + "\x00" for end in range(4, len(whole) // 2, 3))
    request = dataclasses.replace(SEEDED, stop=(*never, whole[len(whole) * 2 // 3:][:3]))

    suspensions = assert_suspend_resume_equals_uninterrupted(adapter, request, [1, 1, 1, 1])

    assert any(s.checkpoint["held"] for s in suspensions), "some suspension came while text was held back"


def test_the_incremental_decoder_goes_on_from_its_saved_state_inside_a_character(tokenizer):
    ids = tokenizer("a 平方 b", add_special_tokens=False).input_ids  # each CJK character is 3 byte tokens
    whole = _IncrementalDecoder(tokenizer)
    expected = "".join(whole.push(i) for i in ids) + whole.flush()
    pending_cuts = 0
    for cut in range(1, len(ids)):
        before = _IncrementalDecoder(tokenizer)
        text = "".join(before.push(i) for i in ids[:cut])
        state = json.loads(json.dumps({"window": list(before.window), "emitted": before.emitted}))
        pending_cuts += state["emitted"] < len(state["window"])
        after = _IncrementalDecoder(tokenizer, state["window"], state["emitted"])
        assert text + "".join(after.push(i) for i in ids[cut:]) + after.flush() == expected
    assert pending_cuts >= 4, "cuts inside a character leave ids not yet decoded"


def test_a_generation_suspended_on_one_worker_resumes_on_another(tiny_model_path):
    here, there = _adapter(tiny_model_path), _adapter(tiny_model_path)
    whole = _whole(here, SEEDED)

    text, suspended = _suspend(here, SEEDED, 3)
    rest = _whole(there, _resumed(SEEDED, text, suspended))

    assert (text + rest[0], rest[1]) == whole
    assert there.kv_caches.resumed == {"kv_cache": 0, "recompute": 1}


def test_the_budget_counts_every_segment_and_ends_at_the_context_length(tiny_model_path, tokenizer, model_config):
    adapter = _adapter(tiny_model_path)
    context = model_config.max_position_embeddings
    words = 1
    while len(tokenizer(PROMPT + " tasks" * words).input_ids) < context - 6:
        words += 1
    request = dataclasses.replace(GREEDY, prompt=PROMPT + " tasks" * words, max_tokens=100)
    room = context - len(tokenizer(request.prompt).input_ids)

    assert_suspend_resume_equals_uninterrupted(adapter, request, [1, 1])
    assert _whole(adapter, request)[1].completion_tokens == room < 100


# --- the store of kept caches --------------------------------------------------------------


def test_a_kept_cache_is_measured_by_its_tensors(tiny_model_path, tokenizer, model_config):
    adapter = _adapter(tiny_model_path, kv_cache_budget_bytes=LARGE)
    config = model_config
    prompt_tokens = len(tokenizer(PROMPT).input_ids)

    _, suspended = _suspend(adapter, GREEDY, 4)

    positions = prompt_tokens + suspended.completion_tokens - 1  # the last generated id is not in it yet
    float32 = 4
    per_position = config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim * float32
    assert adapter.kv_caches.size_bytes == positions * per_position
    assert suspended.checkpoint["cache_key"] in adapter.kv_caches


def test_the_least_recently_suspended_cache_is_dropped_past_the_budget(tiny_model_path):
    measure = _adapter(tiny_model_path, kv_cache_budget_bytes=LARGE)
    _suspend(measure, GREEDY, 3)
    one_cache = measure.kv_caches.size_bytes
    adapter = _adapter(tiny_model_path, kv_cache_budget_bytes=one_cache * 5 // 2)  # room for two, not three
    requests = [dataclasses.replace(GREEDY, request_id=f"req-{n}") for n in range(3)]
    whole = _whole(adapter, GREEDY)

    # The same generation so far each time: caches of the same size.
    suspended = [_suspend(adapter, request, 3) for request in requests]

    assert len(adapter.kv_caches) == 2 and adapter.kv_caches.size_bytes == 2 * one_cache
    assert [s.checkpoint["cache_key"] in adapter.kv_caches for _, s in suspended] == [False, True, True]
    for request, (text, suspension) in zip(requests, suspended, strict=True):
        rest = _whole(adapter, _resumed(request, text, suspension))
        assert (text + rest[0], rest[1]) == whole
    assert adapter.kv_caches.resumed == {"kv_cache": 2, "recompute": 1}
    assert len(adapter.kv_caches) == 0


def test_unloading_drops_the_kept_caches(tiny_model_path):
    adapter = _adapter(tiny_model_path, kv_cache_budget_bytes=LARGE)
    text, suspended = _suspend(adapter, GREEDY, 2)
    assert len(adapter.kv_caches) == 1

    adapter.unload()
    adapter.load("cpu")

    assert len(adapter.kv_caches) == 0
    _whole(adapter, _resumed(GREEDY, text, suspended))
    assert adapter.kv_caches.resumed == {"kv_cache": 0, "recompute": 1}


# --- settings and checkpoints --------------------------------------------------------------


def test_the_budget_comes_from_the_model_else_the_plugin_setting_else_256_mib(tiny_model_path):
    def budget(config: dict, plugin_settings: dict) -> int:
        return TransformersAdapter({"path": tiny_model_path, **config}, plugin_settings).kv_caches.budget_bytes

    assert budget({}, {}) == 256 * 1024 * 1024
    assert budget({}, {"kv_cache_budget_bytes": 1000}) == 1000
    assert budget({"kv_cache_budget_bytes": 0}, {"kv_cache_budget_bytes": 1000}) == 0


@pytest.mark.parametrize("value", [-1, "256MiB", 1.5, True])
@pytest.mark.parametrize("where", ["adapter_config", "plugin setting"])
def test_a_bad_budget_is_refused(tiny_model_path, value, where):
    config, plugin_settings = {"path": tiny_model_path}, dict(SETTINGS)
    (config if where == "adapter_config" else plugin_settings)["kv_cache_budget_bytes"] = value
    with pytest.raises(AdapterConfigError) as caught:
        TransformersAdapter(config, plugin_settings)
    assert caught.value.key == "kv_cache_budget_bytes"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c.update(version=99),
        lambda c: c.update(prompt_tokens=c["prompt_tokens"] + 1),  # another prompt or tokenizer
        lambda c: c.update(token_ids=[*c["token_ids"], 10_000]),  # not an id of this model
        lambda c: c["decoder"].update(emitted=-1),
        lambda c: c["rng"].update(state="not base64!"),
        lambda c: c.pop("token_ids"),
    ],
)
def test_a_checkpoint_this_adapter_did_not_write_is_a_permanent_error(tiny_model_path, tamper):
    adapter = _adapter(tiny_model_path)
    text, suspended = _suspend(adapter, SEEDED, 2)
    checkpoint = json.loads(json.dumps(suspended.checkpoint))
    tamper(checkpoint)
    request = dataclasses.replace(SEEDED, resume=Resume(text, checkpoint, len(checkpoint.get("token_ids", []))))

    with pytest.raises(AdapterError, match="cannot resume") as caught:
        list(adapter.stream(request))
    assert caught.value.permanent
