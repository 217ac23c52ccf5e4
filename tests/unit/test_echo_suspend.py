"""Suspend and resume in the echo adapter: a resumed stream goes on at the word where it stopped,
text held back for a possible stop sequence included, and counts the whole generation once."""

from __future__ import annotations

import dataclasses
import json

import pytest

from apps.catalog.adapters import AdapterError, GenerationRequest, Resume, Suspended, Usage
from plugins.echo.adapter import EchoAdapter
from tests.adapter_contract import assert_suspend_resume_equals_uninterrupted, split_stream, stream_suspending_after

FAST = {"words_per_second": 0.0}
PROMPT = "alpha beta gamma delta epsilon zeta eta theta iota kappa"


def _request(prompt: str = PROMPT, *, stop: tuple[str, ...] = (), max_tokens: int = 256) -> GenerationRequest:
    return GenerationRequest(request_id="req-1", prompt=prompt, messages=None, max_tokens=max_tokens, stop=stop)


@pytest.mark.parametrize("suspend_after_chunks", [[0], [1], [3, 3], [1, 1, 1, 1, 1]])
def test_suspended_and_resumed_equals_uninterrupted(suspend_after_chunks):
    assert_suspend_resume_equals_uninterrupted(EchoAdapter({}, FAST), _request(), suspend_after_chunks)


@pytest.mark.parametrize(
    "stop",
    [
        ("ta iota",),  # spans words: the "ta " of "beta ", "zeta "… is held back until the next word settles it
        ("iota kap", "eta theta"),
        ("a q",),  # most words end with its first letter: held back again and again, never a match
    ],
)
@pytest.mark.parametrize("suspend_after_chunks", [[1], [2, 1], [3, 0, 1]])
def test_stop_sequences_cut_the_resumed_text_as_the_uninterrupted_one(stop, suspend_after_chunks):
    assert_suspend_resume_equals_uninterrupted(EchoAdapter({}, FAST), _request(stop=stop), suspend_after_chunks)


def test_held_back_text_travels_in_the_checkpoint_not_in_the_sent_text():
    adapter = EchoAdapter({}, FAST)
    request = _request(stop=("ta iota",))
    items = stream_suspending_after(adapter, request, 7)  # 7 words in; the "ta " of "eta " is held back
    suspended = items[-1]
    assert isinstance(suspended, Suspended)
    sent = "".join(item.text for item in items[:-1])
    assert sent == "alpha beta gamma delta epsilon zeta e"
    assert suspended.checkpoint == {"words": 7, "generated": sent + "ta ", "sent": len(sent)}
    assert suspended.completion_tokens == 7

    resume = Resume(sent, json.loads(json.dumps(suspended.checkpoint)), suspended.completion_tokens)
    chunks, usage = split_stream(list(adapter.stream(dataclasses.replace(request, resume=resume))))

    assert chunks == ["ta the"]  # "theta " settled the held "ta "; then "iota" completes the stop
    assert usage == Usage(prompt_tokens=10, completion_tokens=8)


def test_max_tokens_counts_the_words_of_every_segment():
    adapter = EchoAdapter({}, FAST)
    suspensions = assert_suspend_resume_equals_uninterrupted(adapter, _request(max_tokens=4), [2])
    assert suspensions[0].completion_tokens == 2


@pytest.mark.parametrize(
    "checkpoint",
    [{}, {"words": 99, "generated": "", "sent": 0}, {"words": 1, "generated": "a ", "sent": 5},
     {"words": "1", "generated": "a ", "sent": 0}],
)
def test_a_checkpoint_it_did_not_write_is_a_permanent_error(checkpoint):
    request = dataclasses.replace(_request(), resume=Resume("", checkpoint, 0))
    with pytest.raises(AdapterError) as caught:
        list(EchoAdapter({}, FAST).stream(request))
    assert caught.value.permanent
