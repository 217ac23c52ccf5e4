"""The vllm adapter against a stand-in for vLLM's AsyncLLM (vLLM is not installable here).

The stand-in behaves as vLLM 0.33's AsyncLLM does where the adapter relies on
it (/work/shared/notes/vllm-0.33-api.md, vllm/v1/engine/async_llm.py and
output_processor.py): ``generate`` is an async generator of RequestOutput-shaped
objects under RequestOutputKind.DELTA (only new text and token ids in each);
``abort(request_id)`` makes the request's stream end with one last output
(no new tokens, finish_reason "abort"); closing or cancelling the generator
aborts the request; ``priority`` is a keyword of generate. Every word of the
prompt is one token, and the model "generates" the prompt back.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from apps.catalog.adapters import AdapterConfigError, AdapterError, ChatMessage, GenerationRequest, TextChunk, Usage
from apps.catalog.plugins import PluginRegistry
from plugins.vllm import adapter as vllm_adapter
from plugins.vllm.adapter import VllmAdapter, VllmRuntime
from tests.adapter_contract import split_stream

WAIT = 10.0  # seconds: a generous bound on waiting for another thread, never an assertion on speed


class StandInEngineDeadError(Exception):
    """Like vllm.v1.engine.exceptions.EngineDeadError: not a ValueError."""


@dataclass(frozen=True)
class StandInSamplingParams:
    """The SamplingParams fields the adapter sets, validated the way vLLM does."""

    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    output_kind: str = "CUMULATIVE"

    def __post_init__(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")


@dataclass(frozen=True)
class StandInLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


class StandInTokenizer:
    def apply_chat_template(self, messages, *, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        text = "".join(f"<{m['role']}> {m['content']} " for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def _output(prompt_ids, text, token_ids, *, finished=False, finish_reason=None):
    return SimpleNamespace(
        prompt_token_ids=prompt_ids,
        outputs=[SimpleNamespace(text=text, token_ids=token_ids, finish_reason=finish_reason)],
        finished=finished,
    )


class StandInEngine:
    """AsyncLLM's surface as the adapter uses it; records what it was asked."""

    def __init__(self, *, hold_after: int | None = None, fail_after: int | None = None,
                 min_concurrent: int = 1, admit_gate: threading.Event | None = None, max_model_len: int = 1000):
        self.hold_after = hold_after  # wait for an abort after this many tokens
        self.fail_after = fail_after  # the engine dies after this many tokens
        self.min_concurrent = min_concurrent  # hold every request until this many run at once
        self.admit_gate = admit_gate  # hold requests before the engine registers them (so abort misses)
        self.max_model_len = max_model_len
        self.requests: dict[str, dict] = {}
        self.aborted: list[str] = []
        self.closed_early: list[str] = []  # generators closed or cancelled before finishing
        self.entered = threading.Event()
        self.finished_requests = threading.Event()
        self.shutdown_calls = 0
        self.dead = False
        self.created_on: threading.Thread | None = None
        self.settings = None
        self._abort_events: dict[str, asyncio.Event] = {}
        self._active = 0
        self.peak_active = 0

    @property
    def errored(self) -> bool:
        return self.dead

    async def check_health(self) -> None:
        if self.dead:
            raise StandInEngineDeadError("EngineCore encountered an issue.")

    def get_tokenizer(self) -> StandInTokenizer:
        return StandInTokenizer()

    def shutdown(self) -> None:
        self.shutdown_calls += 1
        self.dead = True

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        event = self._abort_events.get(request_id)
        if event is not None:  # an id the engine does not know is ignored, as in vLLM
            event.set()

    async def generate(self, prompt, sampling_params, request_id, *, lora_request=None, priority=0):
        self.requests[request_id] = dict(prompt=prompt, params=sampling_params, lora=lora_request,
                                         priority=priority, thread=threading.current_thread())
        self.entered.set()
        if self.dead:
            raise StandInEngineDeadError("EngineCore encountered an issue.")
        words = prompt.split()
        if len(words) > self.max_model_len:
            raise ValueError(f"The decoder prompt (length {len(words)}) is longer than the maximum model length")
        if self.admit_gate is not None:
            while not self.admit_gate.is_set():
                await asyncio.sleep(0.001)
        abort = self._abort_events[request_id] = asyncio.Event()
        prompt_ids = list(range(len(words)))
        self._active += 1
        self.peak_active = max(self.peak_active, self._active)
        finished = False
        try:
            while self.peak_active < self.min_concurrent:
                await asyncio.sleep(0.001)
            count = min(len(words), sampling_params.max_tokens)
            for index in range(count):
                if index == self.hold_after:
                    await abort.wait()
                if self.fail_after is not None and index == self.fail_after:
                    self.dead = True
                    raise StandInEngineDeadError("EngineCore encountered an issue.")
                if abort.is_set():
                    finished = True
                    yield _output(prompt_ids, "", [], finished=True, finish_reason="abort")
                    return
                await asyncio.sleep(0)  # let other requests' outputs interleave
                last = index == count - 1
                finished = last
                yield _output(prompt_ids, words[index] if index == 0 else " " + words[index], [1000 + index],
                              finished=last, finish_reason="length" if last else None)
        finally:
            self._active -= 1
            self._abort_events.pop(request_id, None)
            if not finished:
                self.closed_early.append(request_id)
            self.finished_requests.set()


@pytest.fixture
def engine() -> StandInEngine:
    return StandInEngine()


@pytest.fixture
def make_adapter(monkeypatch, tmp_path, engine):
    """Adapters whose _create_engine returns the stand-in; all unloaded afterwards."""
    adapters: list[VllmAdapter] = []

    def create_engine(settings):
        engine.created_on = threading.current_thread()
        engine.settings = settings
        return VllmRuntime(engine=engine, sampling_params=StandInSamplingParams, lora_request=StandInLoRARequest,
                           delta_output_kind="DELTA", client_errors=(ValueError,))

    monkeypatch.setattr(vllm_adapter, "_create_engine", create_engine)

    def make(**config) -> VllmAdapter:
        adapter = VllmAdapter({"model": str(tmp_path), **config}, {})
        adapters.append(adapter)
        adapter.load(adapter.resources().device)
        return adapter

    yield make
    for adapter in adapters:
        adapter.unload()


def _request(prompt="one two three four", *, request_id="task:1", **fields) -> GenerationRequest:
    defaults = dict(messages=None, max_tokens=64)
    return GenerationRequest(request_id=request_id, prompt=prompt, **{**defaults, **fields})



# -- streaming ----------------------------------------------------------------


def test_chunks_stream_in_order_then_one_usage_with_the_token_counts(make_adapter, engine):
    chunks, usage = split_stream(list(make_adapter().stream(_request("one two three four five", max_tokens=3))))

    assert chunks == ["one", " two", " three"]
    assert usage == Usage(prompt_tokens=5, completion_tokens=3)


def test_the_engine_is_built_and_driven_on_the_adapters_own_loop_thread(make_adapter, engine):
    adapter = make_adapter()
    list(adapter.stream(_request()))

    loop_thread = engine.created_on
    assert loop_thread is not threading.current_thread() and loop_thread.is_alive()
    assert engine.requests["task:1"]["thread"] is loop_thread


def test_requests_carry_delta_sampling_params_and_the_priority_keyword(make_adapter, engine):
    adapter = make_adapter()
    request = _request(temperature=0.7, top_p=0.9, seed=5, stop=("END",), priority="interactive")
    list(adapter.stream(request))

    sent = engine.requests["task:1"]
    assert sent["params"] == StandInSamplingParams(max_tokens=64, temperature=0.7, top_p=0.9, seed=5, stop=["END"],
                                                   output_kind="DELTA")
    assert sent["priority"] == 0
    assert sent["lora"] is None
    assert engine.settings.engine_args()["scheduling_policy"] == "priority"


def test_each_platform_class_reaches_vllm_as_its_priority(make_adapter, engine):
    adapter = make_adapter()
    for priority in ("interactive", "normal", "batch"):
        list(adapter.stream(_request(request_id=priority, priority=priority)))
    assert [engine.requests[c]["priority"] for c in ("interactive", "normal", "batch")] == [0, 1, 2]


def test_the_models_default_lora_is_applied_to_every_request(make_adapter, engine, tmp_path):
    adapter = make_adapter(lora_modules={"support": "/loras/support", "legal": "/loras/legal"}, lora="support")
    list(adapter.stream(_request()))

    assert engine.requests["task:1"]["lora"] == StandInLoRARequest("support", 2, "/loras/support")
    assert engine.settings.engine_args()["enable_lora"] is True


def test_chat_messages_are_formatted_with_the_models_chat_template(make_adapter, engine):
    request = _request(None, messages=(ChatMessage("system", "be brief"), ChatMessage("user", "hi there")))
    chunks, usage = split_stream(list(make_adapter().stream(request)))

    assert engine.requests["task:1"]["prompt"] == "<system> be brief <user> hi there <assistant>"
    assert usage.prompt_tokens == 7


def test_concurrent_streams_from_several_threads_each_get_only_their_own_deltas(monkeypatch, tmp_path):
    threads_count = 6
    engine = StandInEngine(min_concurrent=threads_count)
    runtime = VllmRuntime(engine=engine, sampling_params=StandInSamplingParams, lora_request=StandInLoRARequest,
                          delta_output_kind="DELTA")
    monkeypatch.setattr(vllm_adapter, "_create_engine", lambda settings: runtime)
    adapter = VllmAdapter({"model": str(tmp_path)}, {})
    adapter.load()
    prompts = {f"task-{n}:1": " ".join(f"t{n}w{i}" for i in range(30)) for n in range(threads_count)}
    results: dict[str, list] = {}
    start = threading.Barrier(threads_count)

    def run(request_id: str) -> None:
        start.wait()
        results[request_id] = list(adapter.stream(_request(prompts[request_id], request_id=request_id)))

    workers = [threading.Thread(target=run, args=(request_id,)) for request_id in prompts]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(WAIT)
    finally:
        adapter.unload()

    assert engine.peak_active == threads_count  # they really were generated side by side
    for request_id, prompt in prompts.items():
        chunks, usage = split_stream(results[request_id])
        assert "".join(chunks) == prompt
        assert usage == Usage(prompt_tokens=30, completion_tokens=30)


# -- cancel -----------------------------------------------------------------


def test_cancel_from_another_thread_aborts_that_request_and_the_stream_ends_with_usage(make_adapter, engine):
    engine.hold_after = 2
    adapter = make_adapter()
    stream = adapter.stream(_request("a b c d e f", request_id="task-9:2"))
    first_two = [next(stream), next(stream)]

    canceller = threading.Thread(target=adapter.cancel, args=("task-9:2",))
    canceller.start()
    canceller.join(WAIT)
    rest = list(stream)

    chunks, usage = split_stream(first_two + rest)
    assert chunks == ["a", " b"]
    assert usage == Usage(prompt_tokens=6, completion_tokens=2)
    assert engine.aborted == ["task-9:2"]


def test_a_cancel_that_beats_the_request_into_the_engine_still_stops_it(make_adapter, engine):
    engine.admit_gate = threading.Event()
    adapter = make_adapter()
    items: list = []
    reader = threading.Thread(target=lambda: items.extend(adapter.stream(_request("a b c d", request_id="early:1"))))
    reader.start()
    assert engine.entered.wait(WAIT)

    adapter.cancel("early:1")  # the engine does not know the id yet: its abort is a no-op
    engine.admit_gate.set()
    reader.join(WAIT)

    chunks, usage = split_stream(items)
    assert chunks == ["a"]  # at most the output already on its way
    assert usage == Usage(prompt_tokens=4, completion_tokens=1)
    assert engine.closed_early == ["early:1"]  # the adapter closed generate(), which aborts in vLLM


def test_cancel_of_an_unknown_or_finished_request_does_nothing(make_adapter, engine):
    adapter = make_adapter()
    list(adapter.stream(_request()))
    adapter.cancel("task:1")
    adapter.cancel("never-seen")
    assert engine.aborted == []


def test_a_worker_that_stops_reading_makes_the_engine_drop_the_request(make_adapter, engine):
    engine.hold_after = 1
    adapter = make_adapter()
    stream = adapter.stream(_request("a b c", request_id="dropped:1"))
    assert next(stream) == TextChunk("a")

    stream.close()

    assert engine.finished_requests.wait(WAIT)
    assert engine.closed_early == ["dropped:1"]


# -- errors -----------------------------------------------------------------


def test_a_dead_engine_is_a_retryable_adapter_error(make_adapter, engine):
    engine.dead = True
    with pytest.raises(AdapterError) as caught:
        list(make_adapter().stream(_request()))
    assert caught.value.permanent is False


def test_an_engine_that_dies_mid_stream_fails_the_stream_retryably(make_adapter, engine):
    engine.fail_after = 2
    stream = make_adapter().stream(_request("a b c d"))
    received = [next(stream), next(stream)]
    with pytest.raises(AdapterError) as caught:
        next(stream)
    assert received == [TextChunk("a"), TextChunk(" b")]
    assert caught.value.permanent is False
    assert "StandInEngineDeadError" in str(caught.value)


def test_a_value_error_from_the_engine_is_permanent(make_adapter, engine):
    engine.max_model_len = 3
    with pytest.raises(AdapterError) as caught:
        list(make_adapter().stream(_request("one two three four")))
    assert caught.value.permanent is True
    assert "longer than the maximum model length" in str(caught.value)


def test_sampling_params_vllm_rejects_are_permanent_and_never_reach_the_engine(make_adapter, engine):
    with pytest.raises(AdapterError) as caught:
        list(make_adapter().stream(_request(temperature=1.0, top_p=0.0)))
    assert caught.value.permanent is True
    assert engine.requests == {}


def test_messages_a_model_cannot_format_are_permanent(make_adapter, engine, monkeypatch):
    def no_template(messages, **kwargs):
        raise ValueError("Cannot use chat template functions because tokenizer.chat_template is not set")

    monkeypatch.setattr(StandInTokenizer, "apply_chat_template", staticmethod(no_template))
    with pytest.raises(AdapterError) as caught:
        list(make_adapter().stream(_request(None, messages=(ChatMessage("user", "hi"),))))
    assert caught.value.permanent is True


# -- lifecycle --------------------------------------------------------------


def test_unload_shuts_the_engine_down_and_stops_the_loop_thread(make_adapter, engine):
    adapter = make_adapter()
    assert adapter.health() is True
    loop_thread = engine.created_on

    adapter.unload()

    assert engine.shutdown_calls == 1
    assert not loop_thread.is_alive()
    assert adapter.health() is False
    with pytest.raises(AdapterError) as caught:
        list(adapter.stream(_request()))
    assert caught.value.permanent is False
    adapter.unload()  # a second unload is harmless
    assert engine.shutdown_calls == 1


def test_unload_fails_streams_in_flight_retryably(make_adapter, engine):
    engine.hold_after = 1
    adapter = make_adapter()
    stream = adapter.stream(_request("a b c"))
    assert next(stream) == TextChunk("a")

    adapter.unload()

    with pytest.raises(AdapterError) as caught:
        next(stream)
    assert caught.value.permanent is False
    assert engine.closed_early == ["task:1"]
    assert not engine.created_on.is_alive()


def test_health_is_false_once_the_engine_has_died(make_adapter, engine):
    adapter = make_adapter()
    assert adapter.health() is True
    engine.dead = True
    assert adapter.health() is False


def test_an_engine_that_fails_to_start_is_an_adapter_error_and_leaves_no_thread(monkeypatch, tmp_path):
    started_on: list[threading.Thread] = []

    def create_engine(settings):
        started_on.append(threading.current_thread())
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(vllm_adapter, "_create_engine", create_engine)
    adapter = VllmAdapter({"model": str(tmp_path)}, {})
    with pytest.raises(AdapterError, match="CUDA out of memory"):
        adapter.load()
    assert not started_on[0].is_alive()
    assert adapter.health() is False


def test_a_model_directory_missing_on_this_worker_is_a_config_error(tmp_path):
    adapter = VllmAdapter({"model": str(tmp_path / "absent")}, {})
    with pytest.raises(AdapterConfigError) as caught:
        adapter.load()
    assert caught.value.key == "model"


def test_a_bad_adapter_config_is_refused_when_the_adapter_is_made():
    with pytest.raises(AdapterConfigError) as caught:
        VllmAdapter({"model": "meta-llama/Llama-3-8B"}, {})
    assert caught.value.key == "model"


def test_resources_are_a_gpu_and_the_configured_or_estimated_memory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    assert VllmAdapter({"model": str(tmp_path)}, {}).resources().device == "gpu"
    assert VllmAdapter({"model": str(tmp_path)}, {}).resources().gpu_memory_bytes == 1300
    configured = VllmAdapter({"model": str(tmp_path), "gpu_memory_bytes": 8 << 30}, {})
    assert configured.resources().gpu_memory_bytes == 8 << 30


def test_the_plugin_registers_its_adapter_without_vllm_installed():
    registry = PluginRegistry()
    registry.load(["plugins.vllm"], {})
    assert registry.adapter_names == ["vllm"]
    adapter = registry.create_adapter("vllm", {"model": "/models/absent"})
    assert isinstance(adapter, VllmAdapter)
