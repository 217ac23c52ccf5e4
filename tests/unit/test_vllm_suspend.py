"""Suspend and resume in the vllm adapter: the pure half in mapping, then the adapter on a toy engine.

vLLM is not installable here, so the adapter runs against ``ToyEngine``, which
behaves as vLLM's AsyncLLM does where suspend and resume depend on it
(vllm/v1/engine/output_processor.py and detokenizer.py): a prompt is text or a
``TokensPrompt`` dict; outputs are RequestOutput-shaped DELTA items; with stop
strings the detokenizer holds back the last (longest stop - 1) characters until
the request finishes, and looks for stop strings in the request's own output
text only; ``abort`` ends the stream with one last output (no new tokens,
finish_reason "abort") that releases the held-back text. Its "model" is greedy
and deterministic: each word's successor in ``WORDS`` (a cycle), so a resumed
request whose prompt ends with the generated tokens goes on exactly as the
uninterrupted one did.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from types import SimpleNamespace

import pytest

from apps.catalog.adapters import (
    AdapterError,
    ChatMessage,
    GenerationRequest,
    Resume,
    Suspended,
    TextChunk,
    Usage,
)
from plugins.openai_compatible.adapter import OpenAICompatibleAdapter
from plugins.vllm import adapter as vllm_adapter
from plugins.vllm import mapping
from plugins.vllm.adapter import VllmAdapter, VllmRuntime
from tests.adapter_contract import (
    assert_cancel_wins_over_suspend,
    assert_suspend_resume_equals_uninterrupted,
    split_stream,
)
from tests.unit.test_vllm_adapter import StandInLoRARequest, StandInSamplingParams, StandInTokenizer

WAIT = 10.0  # seconds: a generous bound on waiting for another thread, never an assertion on speed

WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
IDS = {word: index for index, word in enumerate(WORDS)}


def _resume(request: GenerationRequest, text: str, suspended: Suspended) -> GenerationRequest:
    """The request as the platform resumes it: same fields, the checkpoint as it stored it (JSON)."""
    stored = json.loads(json.dumps(suspended.checkpoint))
    return dataclasses.replace(request, resume=Resume(text, stored, suspended.completion_tokens))


# -- mapping: checkpoint, resumed request, usage ----------------------------------------


def _request(prompt: str | None = "one two three", **fields) -> GenerationRequest:
    defaults = dict(request_id="task:1", messages=None, max_tokens=8)
    return GenerationRequest(prompt=prompt, **{**defaults, **fields})


def test_a_checkpoint_is_json_and_reads_back_as_the_same_point():
    written = mapping.checkpoint([5, 6, 7], [8, 9], "ur five")
    stored = json.loads(json.dumps(written))

    point = mapping.resume_point(Resume("...", stored, 2))

    assert point == mapping.ResumePoint(prompt_token_ids=(5, 6, 7), token_ids=(8, 9), held_text="ur five")
    assert mapping.resumed_prompt_token_ids(point) == [5, 6, 7, 8, 9]


def test_a_request_suspended_before_any_output_resumes_from_its_prompt_text():
    point = mapping.resume_point(Resume("", mapping.checkpoint(None, [], ""), 0))
    assert point.prompt_token_ids is None
    assert mapping.resumed_prompt_token_ids(point) is None
    with pytest.raises(ValueError):
        mapping.checkpoint(None, [1], "")  # tokens without the prompt they continue cannot be resumed


@pytest.mark.parametrize(
    "stored, completion_tokens",
    [
        ({"version": 99, "prompt_token_ids": [1], "token_ids": [], "held_text": ""}, 0),
        ({"prompt_token_ids": [1], "token_ids": [], "held_text": ""}, 0),
        ({"version": 1, "prompt_token_ids": [1], "token_ids": ["2"], "held_text": ""}, 1),
        ({"version": 1, "prompt_token_ids": [1], "token_ids": [True], "held_text": ""}, 1),
        ({"version": 1, "prompt_token_ids": "1 2", "token_ids": [], "held_text": ""}, 0),
        ({"version": 1, "prompt_token_ids": None, "token_ids": [3], "held_text": ""}, 1),
        ({"version": 1, "prompt_token_ids": [1], "token_ids": [2], "held_text": None}, 1),
        ({"version": 1, "prompt_token_ids": [1], "token_ids": [2, 3], "held_text": ""}, 1),  # count disagrees
    ],
)
def test_a_checkpoint_this_adapter_did_not_write_is_refused(stored, completion_tokens):
    with pytest.raises(ValueError):
        mapping.resume_point(Resume("", stored, completion_tokens))


def test_a_resumed_request_asks_for_what_is_left_of_max_tokens_with_the_same_sampling():
    request = _request(max_tokens=10, temperature=0.7, top_p=0.9, seed=3, stop=("END",))
    resumed = dataclasses.replace(request, resume=Resume("x", mapping.checkpoint([1], [2, 3, 4], ""), 3))

    assert mapping.remaining_tokens(request) == 10
    assert mapping.remaining_tokens(resumed) == 7
    assert mapping.sampling_kwargs(resumed) == {**mapping.sampling_kwargs(request), "max_tokens": 7}


def test_usage_after_a_resume_counts_the_original_prompt_and_every_segments_tokens():
    point = mapping.ResumePoint(prompt_token_ids=(1, 2, 3), token_ids=(4, 5), held_text="")
    counter = mapping.UsageCounter(point)
    # The resumed request's own prompt holds the generated tokens too: they are not prompt tokens.
    resumed_prompt = mapping.resumed_prompt_token_ids(point)
    for output in (
        SimpleNamespace(prompt_token_ids=resumed_prompt, finished=False,
                        outputs=[SimpleNamespace(text=" a", token_ids=[6], finish_reason=None)]),
        SimpleNamespace(prompt_token_ids=resumed_prompt, finished=True,
                        outputs=[SimpleNamespace(text=" b c", token_ids=[7, 8], finish_reason="length")]),
    ):
        counter.add(mapping.delta_of(output))

    assert counter.usage() == Usage(prompt_tokens=3, completion_tokens=5)
    assert counter.checkpoint("")["token_ids"] == [4, 5, 6, 7, 8]
    assert counter.checkpoint("")["prompt_token_ids"] == [1, 2, 3]


# -- mapping: text held across the suspension point -------------------------------------


def test_resumed_text_without_held_text_passes_through():
    text = mapping.ResumedText("", ("END",))
    assert [text.add(" a"), text.add("b")] == [" a", "b"]
    assert text.finish() == "" and not text.stopped


def test_held_text_is_released_once_no_stop_can_straddle_the_boundary():
    text = mapping.ResumedText("ur fi", ("five six",))  # a stop starting in "ur fi" ends within 7 more chars
    assert text.add("ve") == ""
    assert text.add(" sev") == ""
    assert text.add("en") == "ur five seven"
    assert text.add(" eight") == " eight"
    assert not text.stopped


def test_a_stop_string_straddling_the_boundary_ends_the_text_before_it():
    text = mapping.ResumedText("ur five", ("five six", "nine"))
    assert text.add(" si") == ""
    assert text.add("x seven") == "ur "
    assert text.stopped
    assert text.add(" eight") == "" and text.finish() == ""


def test_held_text_is_released_at_the_end_and_carried_on_by_another_suspension():
    ended = mapping.ResumedText("ur five", ("five six",))
    assert ended.add(" s") == ""
    assert ended.finish() == "ur five s"

    suspended_again = mapping.ResumedText("ur five", ("five six",))
    assert suspended_again.add(" s") == ""
    assert suspended_again.take_held() == "ur five s"


def test_held_text_without_stop_strings_is_released_with_the_first_new_text():
    text = mapping.ResumedText("held", ())
    assert text.add(" new") == "held new"


# -- the adapter on a toy engine ------------------------------------------------------


def _output(prompt_ids, text, token_ids, *, finished=False, finish_reason=None):
    return SimpleNamespace(
        prompt_token_ids=prompt_ids,
        outputs=[SimpleNamespace(text=text, token_ids=token_ids, finish_reason=finish_reason)],
        finished=finished,
    )


class ToyEngine:
    """AsyncLLM's surface as suspend and resume use it; records what it was asked."""

    def __init__(self) -> None:
        self.hold_after: int | None = None  # wait for an abort after this many tokens of a request
        self.holds: list[int | None] = []  # hold_after for each next request, in order (then hold_after)
        self.admit_gate: threading.Event | None = None  # hold requests before the engine knows them
        self.holding = threading.Event()  # set while a request waits at hold_after
        self.entered = threading.Event()
        self.requests: list[dict] = []
        self.aborted: list[str] = []
        self.abort_seen = threading.Event()
        self._aborts: dict[str, asyncio.Event] = {}
        self.errored = False

    async def check_health(self) -> None:
        return None

    def get_tokenizer(self) -> StandInTokenizer:
        return StandInTokenizer()

    def shutdown(self) -> None:
        pass

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        self.abort_seen.set()
        event = self._aborts.get(request_id)
        if event is not None:  # an id the engine does not know (yet) is ignored, as in vLLM
            event.set()

    async def generate(self, prompt, sampling_params, request_id, *, lora_request=None, priority=0):
        prompt_ids = list(prompt["prompt_token_ids"]) if isinstance(prompt, dict) else [IDS[w] for w in prompt.split()]
        self.requests.append(dict(request_id=request_id, prompt=prompt, params=sampling_params, priority=priority))
        self.entered.set()
        if self.admit_gate is not None:
            while not self.admit_gate.is_set():
                await asyncio.sleep(0.001)
        abort = self._aborts[request_id] = asyncio.Event()
        hold_after = self.holds.pop(0) if self.holds else self.hold_after
        stops = sampling_params.stop or []
        held_back = max((len(stop) for stop in stops), default=1) - 1
        context, output_text, sent = list(prompt_ids), "", 0
        try:
            for count in range(sampling_params.max_tokens):
                if count == hold_after:
                    self.holding.set()
                    try:
                        await asyncio.wait_for(abort.wait(), WAIT)
                    finally:
                        self.holding.clear()
                if abort.is_set():
                    yield _output(prompt_ids, output_text[sent:], [], finished=True, finish_reason="abort")
                    return
                await asyncio.sleep(0)
                token = (context[-1] + 1) % len(WORDS)  # greedy: the successor of the last word
                context.append(token)
                output_text += " " + WORDS[token]
                # Stop strings: looked for in this request's own text only, as vLLM's detokenizer does.
                found = [index for stop in stops if (index := output_text.find(stop)) >= 0]
                if found:
                    output_text = output_text[: min(found)]
                    yield _output(prompt_ids, output_text[sent:], [token], finished=True, finish_reason="stop")
                    return
                last = count == sampling_params.max_tokens - 1
                end = len(output_text) if last else max(len(output_text) - held_back, sent)
                yield _output(prompt_ids, output_text[sent:end], [token], finished=last,
                              finish_reason="length" if last else None)
                sent = end
        finally:
            self._aborts.pop(request_id, None)


@pytest.fixture
def engine() -> ToyEngine:
    return ToyEngine()


@pytest.fixture
def adapter(monkeypatch, tmp_path, engine):
    runtime = VllmRuntime(engine=engine, sampling_params=StandInSamplingParams, lora_request=StandInLoRARequest,
                          delta_output_kind="DELTA", tokens_prompt=dict)
    monkeypatch.setattr(vllm_adapter, "_create_engine", lambda settings: runtime)
    adapter = VllmAdapter({"model": str(tmp_path)}, {})
    adapter.load()
    yield adapter
    adapter.unload()


def _uninterrupted(adapter, engine, request) -> tuple[str, Usage]:
    engine.hold_after = None
    chunks, usage = split_stream(list(adapter.stream(dataclasses.replace(request, request_id="whole:1"))))
    return "".join(chunks), usage


def _stream_and_suspend(adapter, engine, request, after: int) -> tuple[str, Suspended | Usage]:
    """Stream ``request`` in one thread; once the engine has made ``after`` tokens, suspend it from this one.
    Returns the streamed text and the last item."""
    engine.hold_after = after
    items: list = []
    consumer = threading.Thread(target=lambda: items.extend(adapter.stream(request)))
    consumer.start()
    assert engine.holding.wait(WAIT), "the engine never reached the suspension point"
    adapter.suspend(request.request_id)
    consumer.join(WAIT)
    assert not consumer.is_alive(), "the stream did not end after suspend"
    assert all(isinstance(item, TextChunk) for item in items[:-1])
    return "".join(item.text for item in items[:-1]), items[-1]


@pytest.mark.parametrize(
    "prompt, max_tokens, suspend_after_chunks",
    [("one two three", 9, [3, 1, 4]), ("five", 12, [0, 2, 0, 5]), ("two", 5, [2, 2])],
)
def test_the_shared_suspend_contract_holds(adapter, engine, prompt, max_tokens, suspend_after_chunks):
    # The shared check suspends once a segment has streamed N chunks; the engine makes
    # exactly N tokens (one chunk each without stop strings) and waits there for the
    # abort, as a real engine would be some tokens later. A suspend before the stream
    # starts (0) never reaches the engine.
    engine.holds = [None, *(after for after in suspend_after_chunks if after), None]
    request = _request(prompt, max_tokens=max_tokens)
    suspensions = assert_suspend_resume_equals_uninterrupted(adapter, request, suspend_after_chunks)
    assert len(suspensions) == len(suspend_after_chunks)
    assert engine.holds == []


def test_the_shared_cancel_wins_over_suspend_check_holds(adapter, engine):
    engine.holds = [None, 1]
    assert_cancel_wins_over_suspend(adapter, _request("one two three", max_tokens=7))


def test_a_suspend_asked_before_the_stream_starts_suspends_it_before_the_engine_sees_it(adapter, engine):
    request = _request("one two three", max_tokens=5)
    adapter.suspend(request.request_id)  # stream() is a generator: nothing registered until it is read
    items = list(adapter.stream(request))

    assert len(items) == 1 and isinstance(items[0], Suspended)
    assert items[0].completion_tokens == 0
    assert engine.requests == []
    chunks, usage = split_stream(list(adapter.stream(_resume(request, "", items[0]))))
    assert "".join(chunks) == " four five six seven eight"
    assert usage == Usage(prompt_tokens=3, completion_tokens=5)


def test_the_vllm_adapter_can_suspend_and_the_openai_compatible_one_cannot():
    assert VllmAdapter.can_suspend is True
    assert OpenAICompatibleAdapter.can_suspend is False


@pytest.mark.parametrize("after", [1, 3, 6])
def test_a_suspended_generation_resumes_to_the_uninterrupted_text_and_usage(adapter, engine, after):
    request = _request("one two three", max_tokens=7, priority="batch")
    whole_text, whole_usage = _uninterrupted(adapter, engine, request)

    first_text, suspended = _stream_and_suspend(adapter, engine, request, after)
    assert isinstance(suspended, Suspended)
    assert suspended.completion_tokens == after
    assert suspended.checkpoint["token_ids"] == [IDS[w] for w in whole_text.split()][:after]

    engine.hold_after = None
    chunks, usage = split_stream(list(adapter.stream(_resume(request, first_text, suspended))))

    assert first_text + "".join(chunks) == whole_text == " four five six seven eight nine ten"
    assert usage == whole_usage == Usage(prompt_tokens=3, completion_tokens=7)


def test_the_resumed_request_continues_from_the_prompt_and_generated_token_ids(adapter, engine):
    request = _request("one two three", max_tokens=7, temperature=0.5, seed=9, priority="interactive")
    first_text, suspended = _stream_and_suspend(adapter, engine, request, 2)

    engine.hold_after = None
    list(adapter.stream(_resume(request, first_text, suspended)))

    first, resumed = engine.requests
    assert resumed["request_id"] == request.request_id  # the id is free again once the first stream ended
    assert resumed["prompt"] == {"prompt_token_ids": [0, 1, 2, 3, 4]}  # "one two three" + "four five"
    assert resumed["params"] == dataclasses.replace(first["params"], max_tokens=5)  # same sampling, seed included
    assert resumed["priority"] == first["priority"] == 0


def test_a_generation_suspended_and_resumed_several_times_still_equals_the_uninterrupted_one(adapter, engine):
    request = _request("two", max_tokens=12)
    whole_text, whole_usage = _uninterrupted(adapter, engine, request)

    streamed = ""
    current = request
    for after in (3, 1, 4):
        text, suspended = _stream_and_suspend(adapter, engine, current, after)
        assert isinstance(suspended, Suspended)
        streamed += text
        current = _resume(request, streamed, suspended)
    engine.hold_after = None
    chunks, usage = split_stream(list(adapter.stream(current)))

    assert streamed + "".join(chunks) == whole_text
    assert usage == whole_usage == Usage(prompt_tokens=1, completion_tokens=12)


def test_text_held_back_for_a_stop_string_is_kept_and_a_stop_straddling_the_suspension_still_stops(adapter, engine):
    # Uninterrupted: " four five six" meets the stop "five six" -> " four ".
    request = _request("one two three", max_tokens=7, stop=("five six",))
    whole_text, whole_usage = _uninterrupted(adapter, engine, request)
    assert whole_text == " four "

    # Suspended after " four five": vLLM held back "ur five" (7 chars); the abort released it.
    first_text, suspended = _stream_and_suspend(adapter, engine, request, 2)
    assert first_text == " fo"
    assert suspended.checkpoint["held_text"] == "ur five"

    engine.hold_after = None
    chunks, usage = split_stream(list(adapter.stream(_resume(request, first_text, suspended))))

    assert first_text + "".join(chunks) == whole_text
    assert usage.prompt_tokens == whole_usage.prompt_tokens
    assert usage.completion_tokens >= 3  # up to the token that completed the stop string


def test_held_text_with_no_stop_after_it_is_streamed_on_resume(adapter, engine):
    request = _request("one two three", max_tokens=6, stop=("five ten",))
    whole_text, whole_usage = _uninterrupted(adapter, engine, request)

    first_text, suspended = _stream_and_suspend(adapter, engine, request, 2)
    assert suspended.checkpoint["held_text"]
    engine.hold_after = None
    chunks, usage = split_stream(list(adapter.stream(_resume(request, first_text, suspended))))

    assert first_text + "".join(chunks) == whole_text == " four five six seven eight nine"
    assert usage == whole_usage


def test_a_suspend_that_beats_the_request_into_the_engine_suspends_at_its_first_output(adapter, engine):
    engine.admit_gate = threading.Event()
    request = _request("one two three", max_tokens=5)
    items: list = []
    consumer = threading.Thread(target=lambda: items.extend(adapter.stream(request)))
    consumer.start()
    assert engine.entered.wait(WAIT)

    adapter.suspend(request.request_id)  # the engine does not know the id yet: its abort is a no-op
    assert engine.abort_seen.wait(WAIT)
    engine.admit_gate.set()
    consumer.join(WAIT)

    suspended = items[-1]
    assert isinstance(suspended, Suspended)
    assert engine.aborted == [request.request_id, request.request_id]  # the adapter aborted it once it was in
    text = "".join(item.text for item in items[:-1])
    engine.admit_gate = None
    chunks, usage = split_stream(list(adapter.stream(_resume(request, text, suspended))))
    assert text + "".join(chunks) == " four five six seven eight"
    assert usage == Usage(prompt_tokens=3, completion_tokens=5)


def test_chat_requests_resume_from_token_ids_without_the_chat_template(adapter, engine, monkeypatch):
    request = _request(None, messages=(ChatMessage("user", "one two"),), max_tokens=4)

    def words_only(messages, **kwargs):
        return " ".join(message["content"] for message in messages)

    monkeypatch.setattr(StandInTokenizer, "apply_chat_template", staticmethod(words_only))
    first_text, suspended = _stream_and_suspend(adapter, engine, request, 1)

    def must_not_run(messages, **kwargs):
        raise AssertionError("a resumed request needs no chat template")

    monkeypatch.setattr(StandInTokenizer, "apply_chat_template", staticmethod(must_not_run))
    engine.hold_after = None
    chunks, usage = split_stream(list(adapter.stream(_resume(request, first_text, suspended))))
    assert first_text + "".join(chunks) == " three four five six"
    assert usage == Usage(prompt_tokens=2, completion_tokens=4)


def test_cancel_wins_over_suspend(adapter, engine):
    engine.hold_after = 2
    request = _request("one two three", max_tokens=7)
    stream = adapter.stream(request)
    first_two = [next(stream), next(stream)]

    adapter.suspend(request.request_id)
    adapter.cancel(request.request_id)
    rest = list(stream)

    chunks, usage = split_stream(first_two + rest)
    assert "".join(chunks) == " four five"
    assert usage == Usage(prompt_tokens=3, completion_tokens=2)


def test_a_stream_that_finishes_before_the_suspend_lands_ends_with_usage(adapter, engine):
    request = _request("one two three", max_tokens=3)
    stream = adapter.stream(request)
    items = [next(stream), next(stream), next(stream)]  # every token is out: the engine has finished

    adapter.suspend(request.request_id)
    items += list(stream)

    chunks, usage = split_stream(items)
    assert "".join(chunks) == " four five six"
    assert usage == Usage(prompt_tokens=3, completion_tokens=3)


def test_a_checkpoint_that_does_not_read_back_is_a_permanent_error(adapter, engine):
    request = _request(resume=Resume("x", {"token_ids": [1]}, 1))
    with pytest.raises(AdapterError) as caught:
        list(adapter.stream(request))
    assert caught.value.permanent is True
    assert engine.requests == []
