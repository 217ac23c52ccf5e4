"""The echo adapter honours the model adapter contract: text chunks, then one Usage."""

from __future__ import annotations

import pytest

from apps.catalog.adapters import AdapterConfigError, ChatMessage, GenerationRequest, Usage
from plugins.echo.adapter import EchoAdapter
from tests.adapter_contract import (
    assert_counts_prompts_as_it_reports_them,
    split_stream,
    stream_and_cancel_after_first_chunk,
)

FAST = {"words_per_second": 0.0}  # the plugin's default setting: no delay


def _request(prompt=None, *, messages=None, max_tokens=256, stop=(), request_id="req-1") -> GenerationRequest:
    return GenerationRequest(
        request_id=request_id, prompt=prompt, messages=messages, max_tokens=max_tokens, stop=tuple(stop)
    )



def test_streams_the_prompt_word_by_word_then_usage():
    prompt = "the quick  brown fox\njumps"
    chunks, usage = split_stream(list(EchoAdapter({}, FAST).stream(_request(prompt))))

    assert chunks == ["the ", "quick  ", "brown ", "fox\n", "jumps"]
    assert "".join(chunks) == prompt
    assert usage == Usage(prompt_tokens=5, completion_tokens=5)
    assert usage.as_dict() == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_empty_prompt_yields_only_usage():
    chunks, usage = split_stream(list(EchoAdapter({}, FAST).stream(_request(""))))
    assert chunks == []
    assert usage == Usage(prompt_tokens=0, completion_tokens=0)


def test_max_tokens_caps_the_number_of_words():
    prompt = "one two three four five"
    chunks, usage = split_stream(list(EchoAdapter({}, FAST).stream(_request(prompt, max_tokens=2))))

    assert "".join(chunks) == "one two "
    assert usage == Usage(prompt_tokens=5, completion_tokens=2)


def test_stop_sequence_cuts_the_output_before_the_stop_text():
    prompt = "hello world STOP and more words"
    chunks, usage = split_stream(list(EchoAdapter({}, FAST).stream(_request(prompt, stop=["STOP"]))))

    output = "".join(chunks)
    assert output == "hello world "
    assert "STOP" not in output
    assert usage.completion_tokens == 2
    assert usage.prompt_tokens == 6


def test_stop_sequence_inside_a_word_keeps_the_text_before_it():
    chunks, _ = split_stream(list(EchoAdapter({}, FAST).stream(_request("alpha betaXYZgamma delta", stop=["XYZ"]))))
    assert "".join(chunks) == "alpha beta"


def test_earliest_of_several_stop_sequences_wins():
    chunks, _ = split_stream(
        list(EchoAdapter({}, FAST).stream(_request("a b c d e f", stop=["e", "c"])))
    )
    assert "".join(chunks) == "a b "


@pytest.mark.parametrize(
    ("prompt", "stop", "expected"),
    [
        ("hello world STOP more", "world STOP", "hello "),
        ("one two\n\nUser: three", "\n\nUser:", "one two"),
        ("say the magic word please", "magic word", "say the "),
    ],
)
def test_stop_sequence_spanning_words_leaves_no_part_of_it_in_the_stream(prompt, stop, expected):
    chunks, usage = split_stream(list(EchoAdapter({}, FAST).stream(_request(prompt, stop=[stop]))))
    assert "".join(chunks) == expected
    assert usage.completion_tokens == len(expected.split())


def test_text_held_back_for_a_possible_stop_is_released_when_no_stop_follows():
    prompt = "hello world peace now"
    chunks, usage = split_stream(list(EchoAdapter({}, FAST).stream(_request(prompt, stop=["world STOP"]))))
    assert "".join(chunks) == prompt
    assert usage.completion_tokens == 4


def test_messages_echo_the_last_user_message_and_count_every_message_as_prompt():
    messages = (
        ChatMessage("system", "you are a helpful echo"),  # 5 words
        ChatMessage("user", "first question here"),  # 3
        ChatMessage("assistant", "first answer"),  # 2
        ChatMessage("user", "the second question"),  # 3
        ChatMessage("assistant", "ignored trailing reply"),  # 3
    )
    chunks, usage = split_stream(list(EchoAdapter({}, FAST).stream(_request(messages=messages))))

    assert "".join(chunks) == "the second question"
    assert usage == Usage(prompt_tokens=16, completion_tokens=3)


def test_cancel_from_another_thread_stops_a_slow_stream_early_and_still_ends_with_usage():
    adapter = EchoAdapter({"words_per_second": 100}, FAST)  # 500 words would take 5 s
    prompt = " ".join(f"w{i}" for i in range(500))
    request = _request(prompt, max_tokens=1000, request_id="to-cancel")
    items = stream_and_cancel_after_first_chunk(adapter, request)

    chunks, usage = split_stream(items)
    assert 1 <= len(chunks) < 500
    assert prompt.startswith("".join(chunks))
    assert usage.completion_tokens == len(chunks)
    assert usage.prompt_tokens == 500


def test_cancel_of_one_request_does_not_stop_another():
    adapter = EchoAdapter({}, FAST)
    adapter.cancel("someone-else")
    chunks, _ = split_stream(list(adapter.stream(_request("still here", request_id="mine"))))
    assert "".join(chunks) == "still here"


def test_model_config_rate_overrides_the_plugin_setting():
    # A negative plugin default is never used when the model sets its own rate.
    adapter = EchoAdapter({"words_per_second": 0}, {"words_per_second": -1})
    chunks, _ = split_stream(list(adapter.stream(_request("ok"))))
    assert chunks == ["ok"]


@pytest.mark.parametrize(
    ("config", "plugin_settings"),
    [
        ({"words_per_second": -1}, FAST),
        ({"words_per_second": -0.5}, FAST),
        ({"words_per_second": "fast"}, FAST),
        ({}, {"words_per_second": -3}),
    ],
)
def test_unusable_words_per_second_raises_adapter_config_error(config, plugin_settings):
    with pytest.raises(AdapterConfigError) as raised:
        EchoAdapter(config, plugin_settings)
    assert raised.value.key == "words_per_second"


def test_counts_a_prompt_before_it_runs_as_its_usage_will_report_it():
    requests = [
        _request("one  two\tthree\nfour "),
        _request(""),
        _request("a long prompt cut short by max tokens", max_tokens=2),
        _request(messages=(ChatMessage("system", "be brief"), ChatMessage("user", "say hi now"))),
    ]
    assert_counts_prompts_as_it_reports_them(EchoAdapter({}, FAST), EchoAdapter({}, FAST), requests)
