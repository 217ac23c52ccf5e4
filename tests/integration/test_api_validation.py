"""POST /api/v1/tasks refuses bad input with a 400 naming the field at fault.

Contract: ``{"error": {"type": "invalid_request_error", "code", "message", "param"}}``
with ``param`` the field (dotted for nested ones, e.g. ``messages.0.role``).
"""

from __future__ import annotations

import uuid

import pytest

from apps.catalog.models import LLMModel
from apps.tasks.models import Task

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"


def _valid(**overrides):
    body = {"model": "echo", "prompt": "hello there"}
    body.update(overrides)
    return body


def _assert_invalid(response, param, code=None):
    """A 400 in the contract's shape naming ``param``; returns the error object."""
    assert response.status == 400, response.body
    assert isinstance(response.body, dict), response.body
    assert set(response.body) == {"error"}, response.body
    error = response.body["error"]
    assert set(error) == {"type", "code", "message", "param"}, error
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


# --- valid submissions ------------------------------------------------------------------


def test_valid_prompt_submission_is_accepted_and_queued(acme_api, acme):
    response = acme_api.post(TASKS, _valid(max_tokens=16, temperature=0.5, top_p=0.9, stop=["\n"],
                                           seed=7, priority="batch", metadata={"k": "v"}, client_ref="r-1"))
    assert response.status == 201, response.body
    task_id = uuid.UUID(response.body["id"])  # a UUID, or this raises
    assert response.body["status"] == "queued"
    assert response.body["model"] == "echo"
    assert response.body["priority"] == "batch"
    assert response.body["params"]["max_tokens"] == 16
    assert response.body["params"]["stop"] == ["\n"]
    assert response.body["metadata"] == {"k": "v"}
    assert response.body["client_ref"] == "r-1"
    task = Task.objects.get(pk=task_id)
    assert task.tenant_id == acme.id
    assert task.state == "queued"


def test_valid_messages_submission_is_accepted_and_queued(acme_api):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi", "name": "bob"},
    ]
    response = acme_api.post(TASKS, {"model": "echo", "messages": messages})
    assert response.status == 201, response.body
    uuid.UUID(response.body["id"])
    assert response.body["status"] == "queued"
    assert response.body["input"] == {"messages": messages}
    assert response.body["priority"] == "normal"  # the default class


def test_a_single_stop_string_is_accepted(acme_api):
    response = acme_api.post(TASKS, _valid(stop="END"))
    assert response.status == 201, response.body
    assert response.body["params"]["stop"] == ["END"]


# --- required fields and prompt/messages ---------------------------------------------------


def test_missing_model(acme_api):
    _assert_invalid(acme_api.post(TASKS, {"prompt": "hi"}), "model", "required")


def test_both_prompt_and_messages(acme_api):
    body = _valid(messages=[{"role": "user", "content": "hi"}])
    _assert_invalid(acme_api.post(TASKS, body), "prompt")


def test_neither_prompt_nor_messages(acme_api):
    _assert_invalid(acme_api.post(TASKS, {"model": "echo"}), "prompt")


def test_message_with_a_bad_role(acme_api):
    body = {"model": "echo", "messages": [{"role": "user", "content": "a"}, {"role": "wizard", "content": "b"}]}
    _assert_invalid(acme_api.post(TASKS, body), "messages.1.role", "invalid_choice")


def test_first_message_with_a_bad_role(acme_api):
    body = {"model": "echo", "messages": [{"role": "robot", "content": "hi"}]}
    _assert_invalid(acme_api.post(TASKS, body), "messages.0.role", "invalid_choice")


def test_message_without_content(acme_api):
    body = {"model": "echo", "messages": [{"role": "user"}]}
    _assert_invalid(acme_api.post(TASKS, body), "messages.0.content", "required")


def test_unknown_field_inside_a_message(acme_api):
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi", "colour": "red"}]}
    _assert_invalid(acme_api.post(TASKS, body), "messages.0.colour", "unknown_field")


def test_empty_messages_list(acme_api):
    _assert_invalid(acme_api.post(TASKS, {"model": "echo", "messages": []}), "messages")


def test_messages_not_a_list(acme_api):
    _assert_invalid(acme_api.post(TASKS, {"model": "echo", "messages": "hi"}), "messages")


# --- numeric parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [(0, "min_value"), (-1, "min_value"), (32_769, "max_value"), (10**9, "max_value"), ("lots", "invalid"),
     (1.5, "invalid"), (True, "invalid"), (None, "null")],
    ids=["zero", "negative", "just-too-big", "huge", "string", "fraction", "bool", "null"],
)
def test_bad_max_tokens(acme_api, value, code):
    _assert_invalid(acme_api.post(TASKS, _valid(max_tokens=value)), "max_tokens", code)


def test_max_tokens_bounds_are_inclusive(acme_api):
    assert acme_api.post(TASKS, _valid(max_tokens=1)).status == 201
    assert acme_api.post(TASKS, _valid(max_tokens=32_768)).status == 201


@pytest.mark.parametrize(("value", "code"), [(-0.1, "min_value"), (2.01, "max_value"), ("hot", "invalid")])
def test_temperature_out_of_range(acme_api, value, code):
    _assert_invalid(acme_api.post(TASKS, _valid(temperature=value)), "temperature", code)


@pytest.mark.parametrize(("value", "code"), [(-0.01, "min_value"), (1.01, "max_value"), ("all", "invalid")])
def test_top_p_out_of_range(acme_api, value, code):
    _assert_invalid(acme_api.post(TASKS, _valid(top_p=value)), "top_p", code)


def test_sampling_bounds_are_inclusive(acme_api):
    assert acme_api.post(TASKS, _valid(temperature=0, top_p=0)).status == 201
    assert acme_api.post(TASKS, _valid(temperature=2, top_p=1)).status == 201


def test_negative_seed(acme_api):
    _assert_invalid(acme_api.post(TASKS, _valid(seed=-1)), "seed", "min_value")


# --- stop, metadata, priority ------------------------------------------------------------------


def test_stop_with_five_sequences(acme_api):
    _assert_invalid(acme_api.post(TASKS, _valid(stop=["a", "b", "c", "d", "e"])), "stop", "too_many")


def test_stop_with_four_sequences_is_fine(acme_api):
    assert acme_api.post(TASKS, _valid(stop=["a", "b", "c", "d"])).status == 201


@pytest.mark.parametrize("value", [["a", 1], [None], 5, {"a": "b"}], ids=["int-item", "null-item", "int", "object"])
def test_stop_not_strings(acme_api, value):
    _assert_invalid(acme_api.post(TASKS, _valid(stop=value)), "stop", "invalid")


def test_stop_with_an_empty_sequence(acme_api):
    _assert_invalid(acme_api.post(TASKS, _valid(stop=["a", ""])), "stop", "empty")


@pytest.mark.parametrize("value", ["tags", ["a", "b"], 3], ids=["string", "list", "int"])
def test_metadata_not_an_object(acme_api, value):
    _assert_invalid(acme_api.post(TASKS, _valid(metadata=value)), "metadata", "invalid")


@pytest.mark.parametrize("value", [{"a": 1}, {"a": None}, {"a": {"b": "c"}}, {"a": ["x"]}],
                         ids=["int", "null", "object", "list"])
def test_metadata_values_not_strings(acme_api, value):
    _assert_invalid(acme_api.post(TASKS, _valid(metadata=value)), "metadata", "invalid")


def test_metadata_with_too_many_keys(acme_api):
    _assert_invalid(acme_api.post(TASKS, _valid(metadata={f"k{i}": "v" for i in range(17)})), "metadata", "too_many")


@pytest.mark.parametrize("value", ["urgent", "INTERACTIVE", 1, ""])
def test_priority_not_a_class(acme_api, value):
    _assert_invalid(acme_api.post(TASKS, _valid(priority=value)), "priority", "invalid_choice")


@pytest.mark.parametrize("value", ["interactive", "normal", "batch"])
def test_every_priority_class_is_accepted(acme_api, value):
    response = acme_api.post(TASKS, _valid(priority=value))
    assert response.status == 201, response.body
    assert response.body["priority"] == value


def test_client_ref_too_long(acme_api):
    _assert_invalid(acme_api.post(TASKS, _valid(client_ref="x" * 129)), "client_ref", "max_length")


# --- unknown fields and unreadable bodies ------------------------------------------------------


def test_unknown_field_is_named(acme_api):
    _assert_invalid(acme_api.post(TASKS, _valid(temprature=0.5)), "temprature", "unknown_field")


def test_tenant_in_the_body_is_an_unknown_field(acme_api):
    # The tenant comes from the key, never from the body.
    _assert_invalid(acme_api.post(TASKS, _valid(tenant="globex")), "tenant", "unknown_field")


@pytest.mark.parametrize("raw", ['{"model": "echo", "prompt": ', "not json at all", '{"model": "echo",}'],
                         ids=["truncated", "garbage", "trailing-comma"])
def test_invalid_json_body(acme_api, raw):
    response = acme_api.post(TASKS, raw)
    assert response.status == 400
    assert isinstance(response.body, dict), response.body  # JSON, not an HTML page
    error = _assert_invalid(response, None)
    assert "Traceback" not in error["message"]
    assert 'File "' not in error["message"]
    assert Task.objects.count() == 0


@pytest.mark.parametrize("raw", ["[]", '["model", "echo"]', '"echo"', "42", "null"])
def test_json_body_that_is_not_an_object(acme_api, raw):
    response = acme_api.post(TASKS, raw)
    _assert_invalid(response, None)
    assert Task.objects.count() == 0


# --- models ------------------------------------------------------------------------------------


def test_unknown_model(acme_api):
    error = _assert_invalid(acme_api.post(TASKS, _valid(model="no-such-model")), "model", "model_not_found")
    assert Task.objects.count() == 0
    assert "no-such-model" in error["message"]


def test_disabled_model(acme_api):
    LLMModel.objects.create(name="retired", adapter="echo", is_public=True, enabled=False)
    _assert_invalid(acme_api.post(TASKS, _valid(model="retired")), "model", "model_not_found")
    assert Task.objects.count() == 0


def test_disabled_model_answers_like_an_unknown_one(acme_api):
    LLMModel.objects.create(name="retired", adapter="echo", is_public=True, enabled=False)
    disabled = acme_api.post(TASKS, _valid(model="retired")).body
    LLMModel.objects.filter(name="retired").delete()
    missing = acme_api.post(TASKS, _valid(model="retired")).body
    assert disabled == missing


def test_nothing_is_stored_for_a_refused_submission(acme_api):
    for body in ({"prompt": "x"}, _valid(max_tokens=0), _valid(stop=[1]), _valid(bogus=1)):
        assert acme_api.post(TASKS, body).status == 400
    assert Task.objects.count() == 0
