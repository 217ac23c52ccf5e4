"""Every registered adapter that declares ``can_suspend`` honours it: a stream suspended and
resumed (any number of times, from checkpoints that went through JSON) yields exactly the text
and the Usage of the uninterrupted one, and a cancel wins over a suspend.

Adapters are found through the plugin registry, so an adapter that starts claiming the
capability is checked here at once; it fails until SUSPENDABLE says how to build and load it
and which requests to suspend, or CHECKED_ELSEWHERE says why it cannot run here and where it
is checked instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from apps.catalog.adapters import GenerationRequest, ModelAdapter
from apps.catalog.plugins import registry
from tests.adapter_contract import assert_cancel_wins_over_suspend, assert_suspend_resume_equals_uninterrupted

PROSE = "the quick brown fox jumps over the lazy dog and then the fox sleeps in the warm sun all day long"


@dataclass(frozen=True)
class Case:
    request: GenerationRequest
    suspend_after_chunks: list[int]


@dataclass(frozen=True)
class Suspendable:
    build: Callable[[pytest.FixtureRequest], ModelAdapter]  # a loaded adapter, as a worker has it
    cases: list[Case]
    long_request: GenerationRequest  # runs well past its first chunk: for cancel-wins-over-suspend


def _request(prompt: str, **fields) -> GenerationRequest:
    return GenerationRequest(request_id=fields.pop("request_id", "req-1"), prompt=prompt, messages=None, **fields)


def _loaded(adapter: ModelAdapter) -> ModelAdapter:
    adapter.load(adapter.resources().device)
    return adapter


def _transformers(fixtures: pytest.FixtureRequest) -> ModelAdapter:
    # On the CPU in float32: a cache rebuilt in one pass equals the kept one to the last
    # bits that matter there (in half precision on a GPU a near tie could go the other way).
    path = fixtures.getfixturevalue("tiny_model_path")
    return _loaded(registry.create_adapter("transformers", {"path": path, "device": "cpu"}))


SUSPENDABLE: dict[str, Suspendable] = {
    "echo": Suspendable(
        build=lambda fixtures: _loaded(registry.create_adapter("echo", {})),
        cases=[
            Case(_request(PROSE, max_tokens=64), [0, 3, 1, 4]),
            Case(_request(PROSE, max_tokens=9), [2, 2]),  # max_tokens counts every segment's words
            Case(_request(PROSE, max_tokens=64, stop=("lazy d", "fox sl")), [3, 1]),
        ],
        long_request=_request(PROSE, max_tokens=64),
    ),
    "transformers": Suspendable(
        build=_transformers,
        cases=[
            Case(_request("When a worker takes a task", max_tokens=24), [0, 3, 1, 5]),  # greedy
            Case(_request("The platform schedules tasks", max_tokens=24, temperature=1.0, seed=11), [2, 4]),
            Case(_request("Operators watch the queues", max_tokens=10, temperature=0.8, top_p=0.9, seed=6), [1, 2]),
        ],
        long_request=_request("The platform schedules tasks", max_tokens=64),
    ),
}


# Adapters whose engine cannot run in this suite; each names the tests that check it instead.
CHECKED_ELSEWHERE: dict[str, str] = {
    # vLLM is not installable here, and its suspend lands asynchronously (an abort reaches the
    # engine some tokens later), which needs an engine that waits for it: a toy one there.
    "vllm": "tests/unit/test_vllm_suspend.py checks it against a toy AsyncLLM",
}


def _suspendable_adapter_names() -> list[str]:
    return [name for name in registry.adapter_names if registry.adapter_class(name).can_suspend]


@pytest.fixture(params=_suspendable_adapter_names())
def suspendable(request) -> tuple[ModelAdapter, Suspendable]:
    name = request.param
    if name in CHECKED_ELSEWHERE:
        pytest.skip(f"{name}: {CHECKED_ELSEWHERE[name]}")
    if name not in SUSPENDABLE:
        pytest.fail(f"adapter {name!r} declares can_suspend: add how to build it and what to suspend to SUSPENDABLE")
    spec = SUSPENDABLE[name]
    return spec.build(request), spec


def test_the_adapters_known_to_suspend_are_registered_and_checked_here():
    assert {"echo", "transformers"} <= set(_suspendable_adapter_names())


def test_suspended_and_resumed_streams_equal_the_uninterrupted_ones(suspendable):
    adapter, spec = suspendable
    for case in spec.cases:
        suspensions = assert_suspend_resume_equals_uninterrupted(adapter, case.request, case.suspend_after_chunks)
        assert len(suspensions) == len(case.suspend_after_chunks)


def test_a_cancel_wins_over_a_suspend(suspendable):
    adapter, spec = suspendable
    assert_cancel_wins_over_suspend(adapter, spec.long_request)


def test_a_suspend_asked_of_another_request_changes_nothing(suspendable):
    adapter, spec = suspendable
    expected = list(adapter.stream(spec.long_request))
    adapter.suspend("some-other-request")
    assert list(adapter.stream(spec.long_request)) == expected


def test_remote_openai_compatible_servers_cannot_be_suspended():
    # The remote server holds the generation's state; the platform cannot stop and resume it there.
    assert registry.adapter_class("openai_compatible").can_suspend is False
