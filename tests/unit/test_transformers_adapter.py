"""The transformers adapter on the tiny local model: real tokens, streamed, counted, cancellable.

The tiny model has random weights, so these tests never look at what the text
says, only at how it is produced: token counts against the tokenizer, equality
with transformers' own greedy ``generate``, reproducibility by seed, stops,
cancels and concurrency.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apps.catalog.adapters import (
    AdapterConfigError,
    AdapterError,
    ChatMessage,
    GenerationRequest,
    ResourceNeeds,
    Usage,
)
from plugins.transformers.adapter import TransformersAdapter
from tests.adapter_contract import assert_counts_prompts_as_it_reports_them, split_stream

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPT = "The platform schedules tasks"
# One intra-op thread: several times faster than two for a model this small
# (see the plugin's cpu_threads setting); the suite then needs seconds, not minutes.
SETTINGS = {"cpu_threads": 1}
LOCAL = {"local_files_only": True}


def _request(prompt: str | None = PROMPT, *, request_id: str = "req-1", **fields) -> GenerationRequest:
    fields.setdefault("max_tokens", 16)
    return GenerationRequest(request_id=request_id, prompt=prompt, messages=fields.pop("messages", None), **fields)



def _run(adapter: TransformersAdapter, request: GenerationRequest) -> tuple[str, Usage]:
    chunks, usage = split_stream(list(adapter.stream(request)))
    return "".join(chunks), usage


@pytest.fixture(scope="module")
def adapter(tiny_model_path) -> TransformersAdapter:
    adapter = TransformersAdapter({"path": tiny_model_path}, SETTINGS)
    adapter.load(adapter.resources().device)  # as the worker does
    return adapter


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path, **LOCAL)


@pytest.fixture(scope="module")
def reference_model(tiny_model_path):
    """The same checkpoint, loaded independently of the adapter."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path, **LOCAL).eval()


# --- streaming and counting ----------------------------------------------------------------


def test_streams_several_chunks_then_usage_with_real_token_counts(adapter, tokenizer):
    chunks, usage = split_stream(list(adapter.stream(_request(max_tokens=24))))

    assert len(chunks) >= 2, chunks
    assert all(chunks), "no empty chunks"
    assert usage.prompt_tokens == len(tokenizer(PROMPT).input_ids)
    assert 1 <= usage.completion_tokens <= 24


def test_greedy_output_and_count_equal_transformers_generate(adapter, tokenizer, reference_model):
    import torch

    encoded = tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        reference = reference_model.generate(**encoded, max_new_tokens=20, do_sample=False)
    new_tokens = reference[0, encoded.input_ids.shape[1]:].tolist()

    text, usage = _run(adapter, _request(max_tokens=20, temperature=0))

    assert usage.completion_tokens == len(new_tokens)
    assert text == tokenizer.decode(new_tokens, skip_special_tokens=True)


@pytest.mark.parametrize("max_tokens", [1, 3, 50])
def test_never_generates_more_than_max_tokens(adapter, max_tokens):
    _, usage = _run(adapter, _request(max_tokens=max_tokens, temperature=1.0, seed=5))
    assert 1 <= usage.completion_tokens <= max_tokens


def test_messages_go_through_the_chat_template(adapter, tokenizer):
    messages = (ChatMessage("system", "Be brief."), ChatMessage("user", "Which task runs first?"))
    rendered = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages], tokenize=False, add_generation_prompt=True
    )

    chunks, usage = split_stream(list(adapter.stream(_request(None, messages=messages, max_tokens=12))))

    assert usage.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    assert 1 <= usage.completion_tokens <= 12


# --- sampling ------------------------------------------------------------------------------


def test_same_seed_same_text_other_seed_other_text(adapter):
    first = _run(adapter, _request(max_tokens=24, temperature=1.0, seed=7))
    again = _run(adapter, _request(max_tokens=24, temperature=1.0, seed=7, request_id="req-2"))
    other = _run(adapter, _request(max_tokens=24, temperature=1.0, seed=8))

    assert again == first
    assert other[0] != first[0]


def test_temperature_none_or_zero_is_greedy(adapter):
    greedy = _run(adapter, _request(max_tokens=16, temperature=0))
    assert _run(adapter, _request(max_tokens=16, temperature=None, seed=3)) == greedy
    assert _run(adapter, _request(max_tokens=16, temperature=1.5, top_p=0.0, seed=3)) == greedy  # nucleus of one


def test_stop_sequence_cuts_the_text_before_it(adapter):
    full, full_usage = _run(adapter, _request(max_tokens=40))
    stop = full[len(full) // 2:][:3]  # a string the greedy text is known to contain
    assert stop.strip(), full

    text, usage = _run(adapter, _request(max_tokens=40, stop=(stop, "a stop that never appears")))

    assert text == full[: full.find(stop)]
    assert usage.completion_tokens < full_usage.completion_tokens, "generation ends at the stop"


# --- cancel and concurrency --------------------------------------------------------------


def test_cancel_from_another_thread_stops_early_and_still_reports_usage(adapter):
    budget = 300
    _, uncancelled = _run(adapter, _request(max_tokens=budget))
    assert uncancelled.completion_tokens == budget, "precondition: this prompt runs to max_tokens"

    stream = adapter.stream(_request(max_tokens=budget, request_id="cancel-me"))
    seen = [next(stream) for _ in range(3)]
    canceller = threading.Thread(target=adapter.cancel, args=("cancel-me",))
    canceller.start()
    canceller.join()
    chunks, usage = split_stream(seen + list(stream))

    assert usage.completion_tokens < budget
    assert usage.completion_tokens <= len(seen) + 1, "stops at the next token, not some time later"
    # A later request with the same id is not affected by the old cancel.
    _, fresh = _run(adapter, _request(max_tokens=5, request_id="cancel-me"))
    assert fresh.completion_tokens == 5


def test_concurrent_requests_each_get_their_own_generation(adapter):
    requests = [_request(max_tokens=30, temperature=1.0, seed=seed, request_id=f"r{seed}") for seed in range(4)]
    sequential = [_run(adapter, request) for request in requests]

    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda request: _run(adapter, request), requests))

    assert concurrent == sequential


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_fields, message",
    [
        ({"prompt": None}, "neither a prompt nor messages"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"prompt": "word " * 3000}, "context"),
    ],
)
def test_bad_requests_fail_permanently(adapter, request_fields, message):
    with pytest.raises(AdapterError, match=message) as caught:
        list(adapter.stream(_request(**request_fields)))
    assert caught.value.permanent


def test_streaming_before_load_is_a_retryable_error(tiny_model_path):
    adapter = TransformersAdapter({"path": tiny_model_path}, SETTINGS)
    assert not adapter.health()
    with pytest.raises(AdapterError) as caught:
        list(adapter.stream(_request()))
    assert not caught.value.permanent  # another worker (or a later attempt) has it loaded


@pytest.mark.parametrize(
    "config, key",
    [
        ({}, "path"),
        ({"path": ""}, "path"),
        ({"path": "/nonexistent/tiny-model"}, "path"),
        ({"path": __file__}, "path"),  # a file, not a directory
        ({"path": str(REPO_ROOT), "device": "tpu"}, "device"),
    ],
)
def test_bad_adapter_config_is_refused_up_front(config, key):
    with pytest.raises(AdapterConfigError) as caught:
        TransformersAdapter(config, SETTINGS)
    assert caught.value.key == key


@pytest.mark.parametrize("threads", [-1, "2", 1.5, True])
def test_bad_cpu_threads_setting_is_refused(tiny_model_path, threads):
    with pytest.raises(AdapterConfigError) as caught:
        TransformersAdapter({"path": tiny_model_path}, {"cpu_threads": threads})
    assert caught.value.key == "cpu_threads"


def test_a_directory_without_a_model_cannot_be_loaded(tmp_path):
    adapter = TransformersAdapter({"path": str(tmp_path)}, SETTINGS)
    with pytest.raises(AdapterConfigError) as caught:
        adapter.load("cpu")
    assert caught.value.key == "path"
    assert not adapter.health()


# --- placement -----------------------------------------------------------------------------


def test_cpu_model_needs_no_gpu_memory(tiny_model_path):
    assert TransformersAdapter({"path": tiny_model_path, "device": "cpu"}, SETTINGS).resources() == ResourceNeeds(
        device="cpu", gpu_memory_bytes=0
    )


def test_gpu_memory_estimate_is_half_precision_weights_plus_a_fifth(tiny_model_path, reference_model):
    parameters = sum(p.numel() for p in reference_model.parameters())
    needs = TransformersAdapter({"path": tiny_model_path, "device": "cuda"}, SETTINGS).resources()
    assert needs == ResourceNeeds(device="gpu", gpu_memory_bytes=int(parameters * 2 * 1.2))


def test_loading_onto_a_gpu_without_cuda_is_a_config_error(tiny_model_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    adapter = TransformersAdapter({"path": tiny_model_path, "device": "cuda"}, SETTINGS)
    with pytest.raises(AdapterConfigError) as caught:
        adapter.load("gpu")
    assert caught.value.key == "device"


def test_unload_releases_the_model(tiny_model_path):
    adapter = TransformersAdapter({"path": tiny_model_path, "device": "cpu"}, SETTINGS)
    adapter.load("cpu")
    assert adapter.health()
    adapter.unload()
    assert not adapter.health()


@pytest.mark.gpu
def test_generates_on_a_gpu_in_half_precision(tiny_model_path, tokenizer):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    adapter = TransformersAdapter({"path": tiny_model_path, "device": "auto"}, SETTINGS)
    needs = adapter.resources()
    assert needs.device == "gpu"
    adapter.load(needs.device)
    chunks, usage = split_stream(list(adapter.stream(_request(max_tokens=24, temperature=0.8, seed=1))))
    assert usage.prompt_tokens == len(tokenizer(PROMPT).input_ids)
    assert 1 <= usage.completion_tokens <= 24
    loaded = adapter.resources()
    assert 0 < loaded.gpu_memory_bytes <= needs.gpu_memory_bytes  # measured from the loaded half-precision weights
    adapter.unload()


# --- counting prompts before they run (the API process) ------------------------------------


def test_an_unloaded_adapter_counts_prompts_and_chats_as_the_loaded_one_reports_them(adapter, tiny_model_path):
    counter = TransformersAdapter({"path": tiny_model_path}, SETTINGS)  # never loaded, as in the API process
    chat = (ChatMessage("system", "Answer in one line."), ChatMessage("user", "def f(x): return x ** 2  # 平方"))
    requests = [_request(PROMPT), _request("東京の天気は？ {\"a\": [1, 2]}"), _request(messages=chat, max_tokens=2)]

    assert_counts_prompts_as_it_reports_them(counter, adapter, requests)
    assert counter.count_prompt_tokens(None, (ChatMessage("user", "hi"),)) > len("hi") / 4  # the template counts


def test_counting_reads_the_tokenizer_without_torch(tiny_model_path):
    code = (
        "import sys;"
        "from plugins.transformers.adapter import TransformersAdapter;"
        "from apps.catalog.adapters import ChatMessage;"
        f"counter = TransformersAdapter({{'path': {tiny_model_path!r}}}, {{}});"
        "print(counter.count_prompt_tokens(None, (ChatMessage('user', 'hi'),)), 'torch' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmagentos.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    count, torch_imported = result.stdout.split()
    assert int(count) > 0 and torch_imported == "False"


def test_a_directory_without_a_tokenizer_counts_as_unknown(tmp_path):
    # A directory the adapter accepts (it exists) but holding no tokenizer: nothing to count with.
    counter = TransformersAdapter({"path": str(tmp_path)}, SETTINGS)
    assert counter.count_prompt_tokens(PROMPT, None) is None


# --- the plugin ----------------------------------------------------------------------------


def test_starting_the_platform_with_the_plugin_does_not_import_torch(tmp_path):
    code = (
        "import sys, django; django.setup();"
        "from apps.catalog.plugins import registry;"
        "assert 'transformers' in registry.adapter_names, registry.adapter_names;"
        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmagentos.settings",
           "LLMAGENTOS_PLUGINS": "plugins.echo,plugins.transformers", "DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
