"""The openai_compatible adapter against a real stub server process (tests/stubs/openai_stub.py).

The remote model API is the outside world, so it is the one thing stood in for;
the adapter's HTTP client, SSE parsing, retries, timeouts and cancel all run for real.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from apps.catalog.adapters import AdapterConfigError, AdapterError, ChatMessage, GenerationRequest, TextChunk, Usage
from apps.catalog.plugins import PluginRegistry
from plugins.openai_compatible import plugin
from plugins.openai_compatible.adapter import DEFAULT_SETTINGS, OpenAICompatibleAdapter, _retry_after, sse_data
from tests.adapter_contract import split_stream, stream_and_cancel_after_first_chunk
from tests.stubs.openai_stub import serve_openai_stub, stub_stats

SETTINGS = dict(plugin.default_settings)
FAST_RETRY = {"retry_backoff": 0.01}  # keeps retry tests quick; the logic is the same


@pytest.fixture(scope="module")
def stub_url(tmp_path_factory) -> str:
    with serve_openai_stub(tmp_path_factory.mktemp("openai-stub") / "stub.log") as url:
        yield url


def remote(mode: str = "echo") -> str:
    """A remote model name with counters of its own on the stub (see the stub's docstring)."""
    return f"{mode}:{uuid.uuid4().hex[:8]}"


def make_adapter(base_url: str, model: str, **config) -> OpenAICompatibleAdapter:
    adapter = OpenAICompatibleAdapter({"base_url": base_url, "model": model, **FAST_RETRY, **config}, SETTINGS)
    adapter.load()
    return adapter


def request(prompt: str | None = None, *, messages=None, request_id: str = "req-1", max_tokens: int = 64,
            **sampling) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, prompt=prompt, messages=messages, max_tokens=max_tokens,
                             **sampling)



def collect_until_error(adapter, req) -> tuple[list, AdapterError]:
    items: list = []
    with pytest.raises(AdapterError) as raised:
        for item in adapter.stream(req):
            items.append(item)
    return items, raised.value


# --- streaming ---------------------------------------------------------------------------------


def test_chat_streams_the_echo_then_the_remotes_usage(stub_url):
    model = remote()
    messages = (ChatMessage("system", "be brief"), ChatMessage("user", "hello there big world"))
    chunks, usage = split_stream(list(make_adapter(stub_url, model).stream(request(messages=messages))))

    assert chunks == ["hello ", "there ", "big ", "world"]  # the role-only first event yields nothing
    assert usage == Usage(prompt_tokens=6, completion_tokens=4)  # the stub's own counts
    stats = stub_stats(stub_url, model)
    assert stats["paths"] == ["/v1/chat/completions"]
    body = stats["last_body"]
    assert body["messages"] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "hello there big world"}]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == model and body["max_tokens"] == 64


def test_a_prompt_goes_to_the_completions_endpoint_by_default(stub_url):
    model = remote()
    chunks, usage = split_stream(list(make_adapter(stub_url, model).stream(request("one two three"))))

    assert chunks == ["one ", "two ", "three"]
    assert usage == Usage(prompt_tokens=3, completion_tokens=3)
    stats = stub_stats(stub_url, model)
    assert stats["paths"] == ["/v1/completions"]
    assert stats["last_body"]["prompt"] == "one two three"
    assert "messages" not in stats["last_body"]


def test_endpoint_chat_turns_a_prompt_into_one_user_message(stub_url):
    model = remote()
    chunks, _ = split_stream(list(make_adapter(stub_url, model, endpoint="chat").stream(request("just a prompt"))))

    assert "".join(chunks) == "just a prompt"
    stats = stub_stats(stub_url, model)
    assert stats["paths"] == ["/v1/chat/completions"]
    assert stats["last_body"]["messages"] == [{"role": "user", "content": "just a prompt"}]


def test_endpoint_completions_refuses_messages_without_calling_the_remote(stub_url):
    model = remote()
    adapter = make_adapter(stub_url, model, endpoint="completions")
    _, error = collect_until_error(adapter, request(messages=(ChatMessage("user", "hi"),)))

    assert error.permanent
    assert "completions" in str(error)
    assert stub_stats(stub_url, model)["requests"] == 0


def test_sampling_settings_stop_and_extra_body_reach_the_remote(stub_url):
    model = remote()
    adapter = make_adapter(stub_url, model, extra_body={"top_k": 40, "temperature": 1.5, "repetition_penalty": 1.1})
    req = request("alpha beta gamma STOP delta", max_tokens=10, temperature=0.2, top_p=0.9, seed=7, stop=("STOP",))
    chunks, usage = split_stream(list(adapter.stream(req)))

    assert "".join(chunks) == "alpha beta gamma "
    assert usage.completion_tokens == 3
    body = stub_stats(stub_url, model)["last_body"]
    assert body["stop"] == ["STOP"]
    assert (body["max_tokens"], body["top_p"], body["seed"]) == (10, 0.9, 7)
    assert body["temperature"] == 0.2  # the task's own value wins over the model's extra_body
    assert (body["top_k"], body["repetition_penalty"]) == (40, 1.1)


def test_unset_sampling_settings_are_not_sent_and_extra_body_defaults_apply(stub_url):
    model = remote()
    adapter = make_adapter(stub_url, model, extra_body={"temperature": 0.0})
    split_stream(list(adapter.stream(request("a b"))))

    body = stub_stats(stub_url, model)["last_body"]
    assert body["temperature"] == 0.0
    assert not {"top_p", "seed", "stop"} & set(body)


def test_max_tokens_caps_the_output(stub_url):
    chunks, usage = split_stream(list(make_adapter(stub_url, remote()).stream(request("a b c d e", max_tokens=2))))
    assert chunks == ["a ", "b "]
    assert usage.completion_tokens == 2


def test_without_a_usage_event_usage_is_estimated(stub_url):
    prompt = "twelve chars plus some more"  # 27 characters
    chunks, usage = split_stream(list(make_adapter(stub_url, remote("no-usage")).stream(request(prompt))))

    assert "".join(chunks) == prompt
    # One token per chunk received; the prompt at 4 characters a token, rounded up.
    assert usage == Usage(prompt_tokens=7, completion_tokens=5)


def test_the_api_key_comes_from_the_named_environment_variable(stub_url, monkeypatch):
    monkeypatch.setenv("STUB_REMOTE_KEY", "sk-test-secret")
    model = remote()
    split_stream(list(make_adapter(stub_url, model, api_key_env="STUB_REMOTE_KEY").stream(request("hi"))))
    assert stub_stats(stub_url, model)["last_authorization"] == "Bearer sk-test-secret"


def test_no_key_configured_sends_no_authorization(stub_url):
    model = remote()
    split_stream(list(make_adapter(stub_url, model).stream(request("hi"))))
    assert stub_stats(stub_url, model)["last_authorization"] is None


def test_concurrent_streams_share_one_adapter(stub_url):
    adapter = make_adapter(stub_url, remote())
    prompts = {f"req-{i}": " ".join(f"t{i}w{j}" for j in range(20)) for i in range(8)}
    outputs: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(request_id: str) -> None:
        try:
            chunks, _ = split_stream(list(adapter.stream(request(prompts[request_id], request_id=request_id))))
            outputs[request_id] = "".join(chunks)
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(request_id,)) for request_id in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert outputs == prompts


def test_health_is_true_for_a_live_remote_and_false_for_a_dead_one(stub_url):
    assert make_adapter(stub_url, remote()).health() is True
    with refusing_port() as port:
        assert make_adapter(f"http://127.0.0.1:{port}/v1", remote()).health() is False


def test_unload_then_load_reopens_the_connection_pool(stub_url):
    adapter = make_adapter(stub_url, remote())
    adapter.unload()
    adapter.load()
    chunks, _ = split_stream(list(adapter.stream(request("back again"))))
    assert "".join(chunks) == "back again"


# --- retries and errors --------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 500, 429, 408])
def test_a_transient_failure_before_any_chunk_is_retried(stub_url, status):
    model = remote(f"fail-once-{status}")
    chunks, usage = split_stream(list(make_adapter(stub_url, model).stream(request("after a retry"))))

    assert chunks == ["after ", "a ", "retry"]  # once: nothing from the failed try leaks in
    assert usage == Usage(prompt_tokens=3, completion_tokens=3)
    assert stub_stats(stub_url, model)["requests"] == 2


def test_retries_give_up_after_max_retries_with_a_transient_error(stub_url):
    model = remote("always-503")
    items, error = collect_until_error(make_adapter(stub_url, model, max_retries=2), request("x"))

    assert items == []
    assert not error.permanent
    assert "503" in str(error) and "3 tries" in str(error)
    assert stub_stats(stub_url, model)["requests"] == 3


def test_max_retries_zero_tries_once(stub_url):
    model = remote("always-502")
    _, error = collect_until_error(make_adapter(stub_url, model, max_retries=0), request("x"))
    assert not error.permanent
    assert stub_stats(stub_url, model)["requests"] == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_client_error_is_permanent_not_retried_and_never_shows_the_key(stub_url, monkeypatch, caplog, status):
    monkeypatch.setenv("STUB_REMOTE_KEY", "sk-very-secret-key")
    model = remote(f"always-{status}")
    adapter = make_adapter(stub_url, model, api_key_env="STUB_REMOTE_KEY", max_retries=3)
    items, error = collect_until_error(adapter, request("x"))

    assert items == []
    assert error.permanent
    message = str(error)
    assert str(status) in message
    assert "stub refuses" not in message  # the remote's own message goes to the operator's log only
    assert "stub refuses" in caplog.text
    assert "sk-very-secret-key" not in message + caplog.text  # though the remote echoed it
    assert stub_stats(stub_url, model)["requests"] == 1


def test_a_connection_cut_after_chunks_is_transient_and_nothing_is_sent_twice(stub_url):
    model = remote("drop-after-2")
    items, error = collect_until_error(make_adapter(stub_url, model), request("one two three four five"))

    assert [item.text for item in items] == ["one ", "two "]
    assert not error.permanent
    assert "after 2 chunks" in str(error)
    assert stub_stats(stub_url, model)["requests"] == 1  # no retry once text went out


def test_an_error_event_mid_stream_is_transient(stub_url, caplog):
    model = remote("error-after-1")
    items, error = collect_until_error(make_adapter(stub_url, model), request("one two three"))

    assert [item.text for item in items] == ["one "]
    assert not error.permanent
    assert "mid-stream" in str(error)
    assert "stub engine failed mid-stream" not in str(error)  # the remote's words: the operator's log only
    assert "stub engine failed mid-stream" in caplog.text
    assert stub_stats(stub_url, model)["requests"] == 1


def test_a_stream_that_ends_unfinished_is_an_error(stub_url):
    model = remote("no-done")
    items, error = collect_until_error(make_adapter(stub_url, model), request("one two"))
    assert [item.text for item in items] == ["one ", "two"]
    assert not error.permanent
    assert "before the generation finished" in str(error)


def test_a_remote_that_does_not_stream_is_a_permanent_error(stub_url):
    model = remote("json-only")
    _, error = collect_until_error(make_adapter(stub_url, model), request("x"))
    assert error.permanent
    assert "not an event stream" in str(error)
    assert stub_stats(stub_url, model)["requests"] == 1


def test_an_unreachable_remote_is_retried_then_transient():
    with refusing_port() as port:
        adapter = make_adapter(f"http://127.0.0.1:{port}/v1", remote(), max_retries=1)
        items, error = collect_until_error(adapter, request("x"))
    assert items == []
    assert not error.permanent
    assert "ConnectError" in str(error) and "2 tries" in str(error)


# --- timeouts and cancel -----------------------------------------------------------------


def test_read_timeout_before_any_chunk_is_retried_then_transient(stub_url):
    model = remote("stall")
    items, error = collect_until_error(make_adapter(stub_url, model, read_timeout=0.3, max_retries=1), request("x"))

    assert items == []
    assert not error.permanent
    assert "read_timeout=0.3" in str(error)
    assert stub_stats(stub_url, model)["requests"] == 2


def test_read_timeout_after_a_chunk_is_transient_and_not_retried(stub_url):
    model = remote("stall-after-1")
    items, error = collect_until_error(make_adapter(stub_url, model, read_timeout=0.3), request("one two three"))

    assert [item.text for item in items] == ["one "]
    assert not error.permanent
    assert "read_timeout" in str(error)
    assert stub_stats(stub_url, model)["requests"] == 1


# slow: 200 words at 0.05 s each, 10 s if not cancelled. stall-after-1: one word, then
# silence; with the default read_timeout of 60 s only cancel interrupting the blocked
# read can end it within the join below.
@pytest.mark.parametrize("mode", ["slow", "stall-after-1"])
def test_cancel_from_another_thread_stops_a_stream_early_and_still_ends_with_usage(stub_url, mode):
    model = remote(mode)
    adapter = make_adapter(stub_url, model)
    prompt = " ".join(f"w{i}" for i in range(200))
    req = request(prompt, request_id="to-cancel", max_tokens=500)
    items = stream_and_cancel_after_first_chunk(adapter, req)

    chunks, usage = split_stream(items)
    assert 1 <= len(chunks) < 200
    assert prompt.startswith("".join(chunks))
    assert usage.completion_tokens == len(chunks)  # estimated: the final usage event never came
    stats = wait_for_stats(stub_url, model, lambda s: s["disconnected"])
    assert stats["disconnected"], "the remote stream was not closed"
    assert stats["requests"] == 1
    assert stats["chunks_sent"] < 200


def test_cancel_during_retry_back_off_ends_the_stream_at_once(stub_url):
    model = remote("always-500")  # no Retry-After: the adapter's own back-off applies
    adapter = make_adapter(stub_url, model, max_retries=5, retry_backoff=60, max_retry_wait=600)  # minutes
    req = request("x", request_id="backing-off")
    items: list = []
    consumer = threading.Thread(target=lambda: items.extend(adapter.stream(req)))
    consumer.start()
    wait_for_stats(stub_url, model, lambda s: s["requests"] >= 1)
    adapter.cancel(req.request_id)
    consumer.join(10)
    assert not consumer.is_alive(), "cancel did not interrupt the back-off"
    assert items == [Usage(prompt_tokens=1, completion_tokens=0)]


def test_cancel_of_one_request_leaves_the_others_alone(stub_url):
    adapter = make_adapter(stub_url, remote())
    adapter.cancel("someone-else")  # not streaming: a no-op, and nothing is remembered
    chunks, _ = split_stream(list(adapter.stream(request("still here", request_id="mine"))))
    assert "".join(chunks) == "still here"


def test_closing_the_stream_early_closes_the_remote_response(stub_url):
    model = remote("slow")
    stream = make_adapter(stub_url, model).stream(request(" ".join(["w"] * 200), max_tokens=500))
    assert isinstance(next(stream), TextChunk)
    stream.close()  # what the worker does when it stops consuming
    stats = wait_for_stats(stub_url, model, lambda s: s["disconnected"])
    assert stats["disconnected"], "the remote stream was not closed"
    assert stats["chunks_sent"] < 200


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"model": "m"}, "base_url"),
        ({"base_url": "", "model": "m"}, "base_url"),
        ({"base_url": "ftp://host/v1", "model": "m"}, "base_url"),
        ({"base_url": "not a url", "model": "m"}, "base_url"),
        ({"base_url": "http:///v1", "model": "m"}, "base_url"),
        ({"base_url": "https://user:secret@host/v1", "model": "m"}, "base_url"),
        ({"base_url": 42, "model": "m"}, "base_url"),
        ({"base_url": "http://host/v1"}, "model"),
        ({"base_url": "http://host/v1", "model": "  "}, "model"),
        ({"base_url": "http://host/v1", "model": "m", "api_key_env": "sk-abc123-looks-like-a-key"}, "api_key_env"),
        ({"base_url": "http://host/v1", "model": "m", "api_key_env": "LLMAGENTOS_SURELY_UNSET_VAR"}, "api_key_env"),
        ({"base_url": "http://host/v1", "model": "m", "endpoint": "responses"}, "endpoint"),
        ({"base_url": "http://host/v1", "model": "m", "connect_timeout": 0}, "connect_timeout"),
        ({"base_url": "http://host/v1", "model": "m", "read_timeout": -1}, "read_timeout"),
        ({"base_url": "http://host/v1", "model": "m", "read_timeout": "60"}, "read_timeout"),
        ({"base_url": "http://host/v1", "model": "m", "read_timeout": True}, "read_timeout"),
        ({"base_url": "http://host/v1", "model": "m", "max_retries": -1}, "max_retries"),
        ({"base_url": "http://host/v1", "model": "m", "max_retries": 1.5}, "max_retries"),
        ({"base_url": "http://host/v1", "model": "m", "retry_backoff": -0.1}, "retry_backoff"),
        ({"base_url": "http://host/v1", "model": "m", "extra_body": ["top_k", 4]}, "extra_body"),
        ({"base_url": "http://host/v1", "model": "m", "extra_body": {"stream": False}}, "extra_body"),
        ({"base_url": "http://host/v1", "model": "m", "extra_body": {"max_tokens": 9999}}, "extra_body"),
    ],
)
def test_an_unusable_config_raises_adapter_config_error_naming_the_key(config, key):
    with pytest.raises(AdapterConfigError) as raised:
        OpenAICompatibleAdapter(config, SETTINGS)
    assert raised.value.key == key


def test_a_bad_plugin_default_is_a_config_error_too():
    with pytest.raises(AdapterConfigError) as raised:
        OpenAICompatibleAdapter({"base_url": "http://host/v1", "model": "m"}, {**SETTINGS, "read_timeout": 0})
    assert raised.value.key == "read_timeout"


def test_the_model_config_overrides_plugin_settings(stub_url):
    model = remote("stall")
    # The plugin default would wait an hour; the model's own 0.2 s applies.
    adapter = OpenAICompatibleAdapter({"base_url": stub_url, "model": model, "read_timeout": 0.2, "max_retries": 0},
                                      {**SETTINGS, "read_timeout": 3600})
    _, error = collect_until_error(adapter, request("x"))
    assert "read_timeout=0.2" in str(error)


def test_the_config_error_for_a_url_with_credentials_does_not_repeat_them():
    with pytest.raises(AdapterConfigError) as raised:
        OpenAICompatibleAdapter({"base_url": "https://user:hunter2@host/v1", "model": "m"}, SETTINGS)
    assert "hunter2" not in str(raised.value)


def test_the_plugin_loads_through_the_registry_with_its_defaults():
    registry = PluginRegistry()
    registry.load(["plugins.openai_compatible"], {"openai_compatible": {"read_timeout": 30}})
    assert registry.adapter_names == ["openai_compatible"]
    adapter = registry.create_adapter("openai_compatible", {"base_url": "http://host/v1", "model": "m"})
    assert isinstance(adapter, OpenAICompatibleAdapter)
    assert plugin.default_settings == DEFAULT_SETTINGS


# --- the wire format, piece by piece ---------------------------------------------------------


def test_sse_data_joins_multi_line_data_and_skips_comments_and_other_fields():
    lines = [": keep-alive", "", "event: message", "id: 7", "data: {\"a\":", "data:1}", "", "retry: 5",
             "", "data: [DONE]"]
    assert list(sse_data(lines)) == ['{"a":\n1}', "[DONE]"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past: at once
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-4"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_from_seconds_milliseconds_or_a_date(headers, expected):
    assert _retry_after(httpx.Headers(headers)) == expected


# --- helpers -------------------------------------------------------------------------------


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A local port bound but not listening: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def wait_for_stats(stub_url: str, model: str, condition: Callable[[dict], bool]) -> dict:
    """The stub's stats for ``model`` once ``condition`` holds (the stub runs concurrently)."""
    deadline = time.monotonic() + 10
    while True:
        stats = stub_stats(stub_url, model)
        if condition(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)
