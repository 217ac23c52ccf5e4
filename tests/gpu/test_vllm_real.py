"""The vllm adapter on a real vLLM engine: needs vLLM, a CUDA GPU and a local model.

Set VLLM_TEST_MODEL to a local model directory (a small instruct model, e.g.
a Qwen2.5-0.5B-Instruct snapshot, keeps this quick); install requirements-gpu.txt.
Skipped when vLLM is not importable, there is no CUDA device, or the variable
is unset. One engine serves the whole module: building it takes a while.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading

import pytest

pytestmark = pytest.mark.gpu

pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
MODEL_DIR = os.environ.get("VLLM_TEST_MODEL", "")
if not os.path.isdir(MODEL_DIR):
    pytest.skip("VLLM_TEST_MODEL is not a local model directory", allow_module_level=True)

from apps.catalog.adapters import ChatMessage, GenerationRequest, Resume, Suspended, TextChunk, Usage  # noqa: E402
from plugins.vllm.adapter import VllmAdapter  # noqa: E402

WAIT = 300.0  # seconds: a bound on waiting for another thread, not a speed assertion


@pytest.fixture(scope="module")
def adapter():
    adapter = VllmAdapter(
        {"model": os.path.abspath(MODEL_DIR), "max_model_len": 2048, "gpu_memory_utilization": 0.5}, {}
    )
    adapter.load(adapter.resources().device)
    yield adapter
    adapter.unload()


def _request(prompt="The capital of France is", *, request_id="gpu:1", **fields) -> GenerationRequest:
    defaults = dict(messages=None, max_tokens=16)
    return GenerationRequest(request_id=request_id, prompt=prompt, **{**defaults, **fields})


def _split(items):
    assert items and isinstance(items[-1], Usage), f"the last item must be Usage, got {items[-1:]!r}"
    assert sum(isinstance(item, Usage) for item in items) == 1
    assert all(isinstance(item, TextChunk) for item in items[:-1])
    return [item.text for item in items[:-1]], items[-1]


def test_streams_text_then_usage_and_greedy_decoding_repeats_itself(adapter):
    first_chunks, first_usage = _split(list(adapter.stream(_request(request_id="gpu:greedy:1"))))
    second_chunks, second_usage = _split(list(adapter.stream(_request(request_id="gpu:greedy:2"))))

    assert "".join(first_chunks).strip()
    assert first_usage.prompt_tokens > 0
    assert 0 < first_usage.completion_tokens <= 16
    assert "".join(second_chunks) == "".join(first_chunks)
    assert second_usage == first_usage


def test_every_priority_class_is_accepted_by_the_engine(adapter):
    # With vLLM's default fcfs policy a non-zero priority is a ValueError:
    # this passing shows the engine runs with scheduling_policy="priority".
    for priority in ("interactive", "normal", "batch"):
        _, usage = _split(list(adapter.stream(_request(request_id=f"gpu:{priority}", priority=priority))))
        assert usage.completion_tokens > 0


def test_chat_messages_go_through_the_models_chat_template(adapter):
    request = _request(None, messages=(ChatMessage("user", "Say hello."),), request_id="gpu:chat")
    chunks, usage = _split(list(adapter.stream(request)))
    assert "".join(chunks).strip()
    assert usage.prompt_tokens > 3  # the template adds its own tokens around the message


def test_cancel_from_another_thread_stops_generation_early(adapter):
    request = _request("Count from 1 to 1000, one number per line:", request_id="gpu:cancel", max_tokens=1500)
    stream = adapter.stream(request)
    assert isinstance(next(stream), TextChunk)

    canceller = threading.Thread(target=adapter.cancel, args=("gpu:cancel",))
    canceller.start()
    canceller.join(WAIT)
    _, usage = _split(list(stream))

    assert usage.completion_tokens < 1500


def test_concurrent_streams_from_threads_each_complete(adapter):
    results: dict[int, list] = {}

    def run(n: int) -> None:
        results[n] = list(adapter.stream(_request(f"Write the number {n} in words:", request_id=f"gpu:conc:{n}")))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    for n in range(4):
        _, usage = _split(results[n])
        assert usage.completion_tokens > 0


def test_health_is_true_while_the_engine_runs(adapter):
    assert adapter.health() is True


@pytest.mark.parametrize("stop", [(), ("one hundred",)], ids=["no-stop", "stop-held-back"])
def test_a_suspended_greedy_generation_resumes_to_the_uninterrupted_text(adapter, stop):
    # Long enough that the suspend lands well before the end; with a stop string
    # vLLM holds text back, which the checkpoint must carry across.
    prompt, max_tokens = "Count from 1 to 200, separated by commas: 1, 2, 3,", 300
    whole_chunks, whole_usage = _split(
        list(adapter.stream(_request(prompt, request_id="gpu:whole", max_tokens=max_tokens, stop=stop)))
    )
    request = _request(prompt, request_id="gpu:suspend", max_tokens=max_tokens, stop=stop)

    stream = adapter.stream(request)
    first = [next(stream) for _ in range(3)]
    suspender = threading.Thread(target=adapter.suspend, args=(request.request_id,))
    suspender.start()
    suspender.join(WAIT)
    rest = list(stream)

    assert all(isinstance(item, TextChunk) for item in first + rest[:-1])
    suspended = rest[-1]
    assert isinstance(suspended, Suspended), f"the stream ended with {suspended!r}, not Suspended"
    assert 0 < suspended.completion_tokens < whole_usage.completion_tokens
    streamed = "".join(item.text for item in first + rest[:-1])
    checkpoint = json.loads(json.dumps(suspended.checkpoint))  # stored as JSON by the platform
    resumed = dataclasses.replace(request, resume=Resume(streamed, checkpoint, suspended.completion_tokens))
    chunks, usage = _split(list(adapter.stream(resumed)))

    # Greedy decoding: the same text and the same charge as without the suspension.
    assert streamed + "".join(chunks) == "".join(whole_chunks)
    assert usage == whole_usage
