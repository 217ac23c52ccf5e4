"""/v1 maps OpenAI's parameters onto the task, and refuses with a 400 naming it
every parameter the platform cannot honour: none is silently dropped.

The task is read back through GET /api/v1/tasks/{id}: a /v1 request is a task
like any other.
"""

from __future__ import annotations

import pytest

from apps.tasks.models import Task
from tests.integration.gateway_support import CHAT, COMPLETIONS, submit_streamed

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "hello there"}]


def _chat(**fields):
    return {"model": "echo", "messages": MESSAGES, **fields}


def _completion(**fields):
    return {"model": "echo", "prompt": "hello there", **fields}


def _task(acme_api, task_id: str) -> dict:
    response = acme_api.get(f"/api/v1/tasks/{task_id}")
    assert response.status == 200, response.body
    return response.body


def _assert_refused(response, param: str, code: str | None = None) -> dict:
    assert response.status == 400, response.body
    assert set(response.body) == {"error"}, response.body
    error = response.body["error"]
    assert set(error) == {"type", "code", "message", "param"}, error
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    assert error["message"], error
    return error


# --- mapped onto the task ---------------------------------------------------------------


def test_chat_parameters_become_the_tasks(acme_api, acme_key):
    task_id = submit_streamed(
        acme_key, CHAT,
        _chat(max_completion_tokens=12, temperature=0.3, top_p=0.8, seed=42, stop="\n", user="end-user-7",
              metadata={"ticket": "T-1"}),
    )

    task = _task(acme_api, task_id)
    assert task["params"] == {"max_tokens": 12, "temperature": 0.3, "top_p": 0.8, "seed": 42, "stop": ["\n"]}
    assert task["input"] == {"messages": MESSAGES}
    assert task["metadata"] == {"ticket": "T-1"}
    assert task["client_ref"] == "end-user-7"
    assert task["priority"] == "normal"
    assert task["status"] == "queued"
    # The end user's id finds their requests, as a client_ref does.
    listed = acme_api.get("/api/v1/tasks", {"client_ref": "end-user-7"}).body["results"]
    assert [item["id"] for item in listed] == [task_id]


def test_max_tokens_works_as_well_as_max_completion_tokens(acme_api, acme_key):
    task_id = submit_streamed(acme_key, CHAT, _chat(max_tokens=7, stop=["a", "b"]))

    params = _task(acme_api, task_id)["params"]
    assert (params["max_tokens"], params["stop"]) == (7, ["a", "b"])


def test_giving_both_max_token_parameters_is_refused(acme_api):
    refused = acme_api.post(CHAT, _chat(max_tokens=7, max_completion_tokens=8))
    _assert_refused(refused, "max_completion_tokens", "conflicting_parameters")


def test_developer_messages_and_text_parts_become_plain_messages(acme_api, acme_key):
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}],
         "name": "ann"},
        {"role": "assistant", "content": "hi", "tool_calls": None},  # null: not given
    ]
    task_id = submit_streamed(acme_key, CHAT, {"model": "echo", "messages": messages})

    assert _task(acme_api, task_id)["input"]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there", "name": "ann"},
        {"role": "assistant", "content": "hi"},
    ]


def test_a_completion_takes_a_prompt_or_a_list_of_one(acme_api, acme_key):
    plain = submit_streamed(acme_key, COMPLETIONS, _completion(max_tokens=3))
    listed = submit_streamed(acme_key, COMPLETIONS, _completion(prompt=["one prompt"]))

    assert _task(acme_api, plain)["input"] == {"prompt": "hello there"}
    assert _task(acme_api, plain)["params"]["max_tokens"] == 3
    assert _task(acme_api, listed)["input"] == {"prompt": "one prompt"}


def test_values_that_ask_for_nothing_more_are_accepted(acme_api, acme_key):
    task_id = submit_streamed(
        acme_key, CHAT,
        _chat(n=1, logprobs=False, response_format={"type": "text"}, frequency_penalty=0, presence_penalty=0.0,
              logit_bias={}, store=False, top_logprobs=None, stream_options={"include_usage": True}),
    )
    completion_id = submit_streamed(acme_key, COMPLETIONS, _completion(n=1, best_of=1, echo=False, suffix=""))

    assert Task.objects.filter(pk__in=[task_id, completion_id]).count() == 2


# --- refused, never dropped ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"n": 2}, "n", "unsupported_value"),
        ({"n": True}, "n", "unsupported_value"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "unsupported_parameter"),
        ({"tool_choice": "none"}, "tool_choice", "unsupported_parameter"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls", "unsupported_parameter"),
        ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
        ({"function_call": "auto"}, "function_call", "unsupported_parameter"),
        ({"response_format": {"type": "json_object"}}, "response_format", "unsupported_value"),
        ({"logprobs": True}, "logprobs", "unsupported_value"),
        ({"top_logprobs": 2}, "top_logprobs", "unsupported_parameter"),
        ({"frequency_penalty": 0.5}, "frequency_penalty", "unsupported_value"),
        ({"presence_penalty": -1}, "presence_penalty", "unsupported_value"),
        ({"logit_bias": {"50256": -100}}, "logit_bias", "unsupported_value"),
        ({"store": True}, "store", "unsupported_value"),
        ({"modalities": ["text", "audio"]}, "modalities", "unsupported_parameter"),
        ({"reasoning_effort": "low"}, "reasoning_effort", "unsupported_parameter"),
        ({"priority": "interactive"}, "priority", "unsupported_parameter"),  # /api/v1's name, not OpenAI's
        ({"no_such_parameter": 1}, "no_such_parameter", "unsupported_parameter"),
        ({"stream_options": {"include_usage": True}}, "stream_options", None),  # without stream
        ({"stream": True, "stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation",
         "unsupported_value"),
        ({"stream": True, "stream_options": {"other": 1}}, "stream_options.other", "unsupported_parameter"),
        ({"stream": "yes"}, "stream", "invalid_type"),
        ({"service_tier": "scale"}, "service_tier", "invalid_value"),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]}, "messages.0.role",
         "unsupported_value"),
        ({"messages": [{"role": "assistant", "content": "x", "tool_calls": []}]}, "messages.0.tool_calls",
         "unsupported_parameter"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages.0.content.0", "unsupported_value"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role", None),
        ({"messages": [{"role": "user"}]}, "messages.0.content", "required"),
        ({"messages": []}, "messages", None),
        ({"messages": None}, "messages", "required"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", None),
        ({"max_tokens": 10**9}, "max_tokens", None),
        ({"temperature": 3}, "temperature", None),
        ({"top_p": 1.5}, "top_p", None),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", None),
        ({"user": "u" * 129}, "user", None),
        ({"metadata": {"k": 1}}, "metadata", None),
        ({"model": None}, "model", "required"),
    ],
)
def test_chat_refuses_what_it_cannot_honour_naming_it(acme_api, fields, param, code):
    refused = acme_api.post(CHAT, _chat(**fields))

    _assert_refused(refused, param, code)
    assert Task.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"n": 3}, "n", "unsupported_value"),
        ({"best_of": 2}, "best_of", "unsupported_value"),
        ({"echo": True}, "echo", "unsupported_value"),
        ({"logprobs": 0}, "logprobs", "unsupported_parameter"),
        ({"suffix": "end"}, "suffix", "unsupported_value"),
        ({"prompt": ["one", "two"]}, "prompt", "unsupported_value"),
        ({"prompt": [1, 2, 3]}, "prompt", "unsupported_value"),
        ({"prompt": None}, "prompt", "required"),
        ({"messages": MESSAGES}, "messages", "unsupported_parameter"),  # a chat parameter
        ({"max_completion_tokens": 5}, "max_completion_tokens", "unsupported_parameter"),
    ],
)
def test_completions_refuse_what_they_cannot_honour_naming_it(acme_api, fields, param, code):
    refused = acme_api.post(COMPLETIONS, _completion(**fields))

    _assert_refused(refused, param, code)
    assert Task.objects.count() == 0


def test_a_body_that_is_not_a_json_object_is_refused(acme_api):
    not_json = acme_api.send("post", CHAT, b"{not json", "application/json")
    a_list = acme_api.post(CHAT, [_chat()])

    assert _assert_refused(not_json, None)["code"] == "invalid_json"
    assert _assert_refused(a_list, None)["code"] == "invalid_type"
