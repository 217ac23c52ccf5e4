"""OpenAI request bodies → the platform's TaskRequest (translation only).

Every parameter of a /v1 body is either mapped onto the task, accepted
because its value asks for nothing (``n: 1``, ``logprobs: false``…), or
refused with a 400 naming it: nothing is silently dropped, so a client never
believes it got something (tools, several choices, log probabilities) that the
platform did not do. As in OpenAI's API, ``null`` means "not given".

The task-level checks (lengths, ranges, the model name) are the task API's
own (``TaskCreateSerializer``); only the names in its errors are put back
into OpenAI's (``client_ref`` → ``user``…).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework import exceptions

from apps.core import priorities
from apps.core.errors import InvalidInput
from apps.tasks.api.serializers import TaskCreateSerializer
from apps.tasks.services import TaskRequest

CHAT = "chat.completion"
COMPLETION = "text_completion"

PRIORITY_HEADER = "X-Priority"

# OpenAI's service tiers → priority classes. "default" and "auto" ask for
# nothing in particular: the tenant's default class (or the X-Priority header's).
SERVICE_TIERS: dict[str, str | None] = {
    "priority": priorities.INTERACTIVE,
    "flex": priorities.BATCH,
    "default": None,
    "auto": None,
}
# The tier a response reports for the class its task ran in.
TIER_OF_CLASS = {priorities.INTERACTIVE: "priority", priorities.NORMAL: "default", priorities.BATCH: "flex"}

# Parameters mapped onto the task (or read by the gateway itself).
_COMMON = frozenset(
    {"model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "seed", "stop", "user",
     "metadata", "service_tier"}
)
MAPPED = {CHAT: _COMMON | {"messages", "max_completion_tokens"}, COMPLETION: _COMMON | {"prompt"}}


def _exactly(expected: object) -> Callable[[Any], bool]:
    # type() too: in Python True == 1 and 0 == False, in JSON they differ.
    return lambda value: type(value) is type(expected) and value == expected


def _zero(value: Any) -> bool:
    return type(value) in (int, float) and value == 0


def _empty_object(value: Any) -> bool:
    return value == {}


def _text_format(value: Any) -> bool:
    return value == {"type": "text"}


def _empty_string(value: Any) -> bool:
    return value == ""


# Parameters the platform cannot honour, with the one value of each that asks
# for nothing beyond what it does anyway; any other value is refused.
_HARMLESS_COMMON: dict[str, Callable[[Any], bool]] = {
    "n": _exactly(1),
    "frequency_penalty": _zero,
    "presence_penalty": _zero,
    "logit_bias": _empty_object,
}
HARMLESS: dict[str, dict[str, Callable[[Any], bool]]] = {
    CHAT: {
        **_HARMLESS_COMMON,
        "logprobs": _exactly(False),
        "response_format": _text_format,
        "store": _exactly(False),
    },
    COMPLETION: {**_HARMLESS_COMMON, "best_of": _exactly(1), "echo": _exactly(False), "suffix": _empty_string},
}

_WHY: dict[str, str] = {
    "n": "n > 1 is not supported: each request makes one completion (send n requests instead)",
    "best_of": "best_of > 1 is not supported: each request makes one completion",
    "logprobs": "log probabilities are not available from this platform",
    "top_logprobs": "log probabilities are not available from this platform",
    "response_format": 'only response_format {"type": "text"} is supported',
    "tools": "tool calling is not supported",
    "tool_choice": "tool calling is not supported",
    "parallel_tool_calls": "tool calling is not supported",
    "functions": "function calling is not supported",
    "function_call": "function calling is not supported",
    "frequency_penalty": "frequency_penalty is not supported (only 0)",
    "presence_penalty": "presence_penalty is not supported (only 0)",
    "logit_bias": "logit_bias is not supported",
    "echo": "echo is not supported: the completion holds the generated text only",
    "suffix": "suffix is not supported",
    "store": "store is not supported: read a completion back as a task (GET /api/v1/tasks/{id})",
}

# Message fields the task keeps; OpenAI's others are tool calling, audio and the like.
_MESSAGE_FIELDS = frozenset({"role", "content", "name"})
# OpenAI's "developer" messages are its newer name for system messages.
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Translated:
    task: TaskRequest
    stream: bool
    include_usage: bool
    # Where the priority class came from ("service_tier", "X-Priority"), for a
    # refusal of it to name; None: the default class.
    priority_param: str | None


def translate(kind: str, body: Any, priority_header: str | None) -> Translated:
    """The task an OpenAI ``kind`` request (CHAT or COMPLETION) asks for; InvalidInput
    or a ValidationError (its field named as the client named it) when it is refused."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_type")
    fields = {name: value for name, value in body.items() if value is not None}
    _refuse_unhonourable(kind, fields)
    stream = _boolean(fields, "stream")
    include_usage = _stream_options(fields, stream)
    priority, priority_param = _priority(fields.get("service_tier"), priority_header)

    task_body: dict[str, Any] = {"priority": priority}
    renamed = {"priority": priority_param or "service_tier", "client_ref": "user"}
    if "model" in fields:
        task_body["model"] = fields["model"]
    if kind == CHAT:
        task_body["messages"] = _messages(fields)
    else:
        task_body["prompt"] = _prompt(fields)
    if "max_tokens" in fields and "max_completion_tokens" in fields:
        raise InvalidInput(
            "give one of max_tokens and max_completion_tokens", code="conflicting_parameters",
            param="max_completion_tokens",
        )
    for name in ("max_tokens", "max_completion_tokens"):
        if name in fields:
            task_body["max_tokens"] = fields[name]
            renamed["max_tokens"] = name
    for name in ("temperature", "top_p", "seed", "stop", "metadata"):
        if name in fields:
            task_body[name] = fields[name]
    if "user" in fields:
        # The end user's id: a client reference, so GET /api/v1/tasks?client_ref=<user>
        # lists that user's requests (stored encrypted, filtered by a blind index).
        task_body["client_ref"] = fields["user"]

    serializer = TaskCreateSerializer(data=task_body)
    if not serializer.is_valid():
        raise exceptions.ValidationError(
            {renamed.get(str(name), str(name)): detail for name, detail in serializer.errors.items()}
        )
    return Translated(serializer.to_request(), stream, include_usage, priority_param)


def _refuse_unhonourable(kind: str, fields: dict[str, Any]) -> None:
    harmless = HARMLESS[kind]
    for name, value in fields.items():
        if name in MAPPED[kind]:
            continue
        accepts = harmless.get(name)
        if accepts is None:
            message = _WHY.get(name, f"{name} is not a parameter this platform supports")
            raise InvalidInput(message, code="unsupported_parameter", param=name)
        if not accepts(value):
            raise InvalidInput(_WHY[name], code="unsupported_value", param=name)


def _boolean(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false", code="invalid_type", param=name)
    return value


def _stream_options(fields: dict[str, Any], stream: bool) -> bool:
    """Whether the stream ends with a usage chunk (stream_options.include_usage)."""
    options = fields.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise InvalidInput("stream_options is only allowed when stream is true", param="stream_options")
    if not isinstance(options, dict):
        raise InvalidInput("stream_options must be an object", code="invalid_type", param="stream_options")
    for name, value in options.items():
        param = f"stream_options.{name}"
        if name not in ("include_usage", "include_obfuscation"):
            raise InvalidInput(f"{param} is not supported", code="unsupported_parameter", param=param)
        if value is not None and not isinstance(value, bool):
            raise InvalidInput(f"{param} must be true or false", code="invalid_type", param=param)
    if options.get("include_obfuscation"):
        raise InvalidInput(
            "stream obfuscation is not supported", code="unsupported_value", param="stream_options.include_obfuscation"
        )
    return bool(options.get("include_usage"))


def _priority(tier: Any, header: str | None) -> tuple[str, str | None]:
    """(class, where it came from): the X-Priority header, else service_tier, else the default."""
    from_tier = None
    if tier is not None:
        if not isinstance(tier, str) or tier not in SERVICE_TIERS:
            raise InvalidInput(
                f"service_tier must be one of {', '.join(SERVICE_TIERS)}", code="invalid_value", param="service_tier"
            )
        from_tier = SERVICE_TIERS[tier]
    if header is not None:
        if header not in priorities.CLASSES:
            raise InvalidInput(
                f"{PRIORITY_HEADER} must be one of {', '.join(priorities.CLASSES)}", code="invalid_value",
                param=PRIORITY_HEADER,
            )
        if from_tier is not None and from_tier != header:
            raise InvalidInput(
                f"service_tier {tier!r} and {PRIORITY_HEADER} {header!r} ask for different classes",
                code="conflicting_parameters", param=PRIORITY_HEADER,
            )
        return header, PRIORITY_HEADER
    if from_tier is not None:
        return from_tier, "service_tier"
    return priorities.DEFAULT, None


def _messages(fields: dict[str, Any]) -> Any:
    """OpenAI's chat messages as the task's; what the task cannot hold is refused."""
    messages = fields.get("messages")
    if messages is None:
        raise InvalidInput("messages is required", code="required", param="messages")
    if not isinstance(messages, list):
        return messages  # the task's serializer refuses it, naming "messages"
    translated: list[Any] = []
    for index, message in enumerate(messages):
        param = f"messages.{index}"
        if not isinstance(message, dict):
            raise InvalidInput(f"{param} must be an object", code="invalid_type", param=param)
        message = {name: value for name, value in message.items() if value is not None}
        role = message.get("role")
        if role in ("tool", "function"):
            raise InvalidInput(
                f"{param}.role {role!r}: tool calling is not supported", code="unsupported_value", param=f"{param}.role"
            )
        for name in message:
            if name not in _MESSAGE_FIELDS:
                raise InvalidInput(
                    f"{param}.{name} is not supported (no tool calling, audio or refusals)",
                    code="unsupported_parameter", param=f"{param}.{name}",
                )
        task_message = dict(message)
        if isinstance(role, str) and role in _ROLES:
            task_message["role"] = _ROLES[role]
        if "content" in message:
            task_message["content"] = _content(message["content"], f"{param}.content")
        translated.append(task_message)
    return translated


def _content(content: Any, param: str) -> Any:
    """A message's content: a string, or OpenAI's list of text parts joined into one."""
    if not isinstance(content, list):
        return content
    texts: list[str] = []
    for index, part in enumerate(content):
        if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
            raise InvalidInput(
                f"{param}.{index}: only text content parts are supported", code="unsupported_value",
                param=f"{param}.{index}",
            )
        if set(part) - {"type", "text"}:
            extra = sorted(set(part) - {"type", "text"})[0]
            raise InvalidInput(
                f"{param}.{index}.{extra} is not supported", code="unsupported_parameter",
                param=f"{param}.{index}.{extra}",
            )
        texts.append(part["text"])
    return "".join(texts)


def _prompt(fields: dict[str, Any]) -> Any:
    """The completion's prompt: a string, or a list holding exactly one string."""
    prompt = fields.get("prompt")
    if prompt is None:
        raise InvalidInput("prompt is required", code="required", param="prompt")
    if isinstance(prompt, list):
        if not all(isinstance(item, str) for item in prompt):
            raise InvalidInput("token arrays are not supported: send the prompt as text", code="unsupported_value",
                               param="prompt")
        if len(prompt) != 1:
            raise InvalidInput(
                "one prompt per request (a list of several is a batch; send one request each)",
                code="unsupported_value", param="prompt",
            )
        return prompt[0]
    return prompt
