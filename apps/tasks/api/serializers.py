"""Task request validation and representation (no logic beyond shape)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.scheduler.estimates import task_wait
from apps.tasks import services
from apps.tasks.models import Priority, Task, TaskState

MAX_PROMPT_CHARS = 200_000
MAX_MESSAGES = 256
MAX_TOKENS_LIMIT = 32_768
MAX_STOP_SEQUENCES = 4
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512

CHAT_ROLES = ("system", "user", "assistant", "tool")


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming the first one: a typo must not pass silently."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                raise serializers.ValidationError({unknown[0]: [serializers.ErrorDetail("unknown field", code="unknown_field")]})
        return super().to_internal_value(data)


class MessageSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=CHAT_ROLES)
    content = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=MAX_PROMPT_CHARS)
    name = serializers.CharField(required=False, max_length=64)


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP_SEQUENCES}]})
class StopField(serializers.Field):
    """A string or a list of up to four non-empty strings; always a list inside."""

    default_error_messages = {
        "invalid": "must be a string or a list of strings",
        "too_many": f"at most {MAX_STOP_SEQUENCES} stop sequences",
        "empty": "stop sequences must not be empty",
    }

    def to_internal_value(self, data: Any) -> list[str]:
        if isinstance(data, str):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            self.fail("invalid")
        if len(data) > MAX_STOP_SEQUENCES:
            self.fail("too_many")
        if any(not item for item in data):
            self.fail("empty")
        return data

    def to_representation(self, value: list[str]) -> list[str]:
        return value


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": MAX_METADATA_KEYS})
class MetadataField(serializers.Field):
    default_error_messages = {
        "invalid": "must be an object of string keys to string values",
        "too_many": f"at most {MAX_METADATA_KEYS} keys",
        "too_long": f"keys are at most {MAX_METADATA_KEY_CHARS} and values at most {MAX_METADATA_VALUE_CHARS} characters",
    }

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            self.fail("invalid")
        if len(data) > MAX_METADATA_KEYS:
            self.fail("too_many")
        if any(len(k) > MAX_METADATA_KEY_CHARS or len(v) > MAX_METADATA_VALUE_CHARS for k, v in data.items()):
            self.fail("too_long")
        return data

    def to_representation(self, value: dict[str, str]) -> dict[str, str]:
        return value


class TaskCreateSerializer(StrictSerializer):
    model = serializers.CharField(max_length=200)
    prompt = serializers.CharField(required=False, trim_whitespace=False, max_length=MAX_PROMPT_CHARS)
    messages = serializers.ListField(
        child=MessageSerializer(), required=False, min_length=1, max_length=MAX_MESSAGES
    )
    max_tokens = serializers.IntegerField(required=False, default=256, min_value=1, max_value=MAX_TOKENS_LIMIT)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=2.0)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    stop = StopField(required=False)
    seed = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**63 - 1)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False, default=Priority.NORMAL)
    metadata = MetadataField(required=False)
    client_ref = serializers.CharField(required=False, allow_null=True, max_length=128)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_prompt = "prompt" in attrs
        has_messages = "messages" in attrs
        if has_prompt == has_messages:
            raise serializers.ValidationError(
                {"prompt": [serializers.ErrorDetail("give exactly one of 'prompt' and 'messages'", code="prompt_or_messages")]}
            )
        return attrs

    def to_request(self) -> services.TaskRequest:
        data = self.validated_data
        return services.TaskRequest(
            model=data["model"],
            prompt=data.get("prompt"),
            messages=[dict(m) for m in data["messages"]] if "messages" in data else None,
            max_tokens=data["max_tokens"],
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            stop=data.get("stop", []),
            seed=data.get("seed"),
            priority=data["priority"],
            metadata=data.get("metadata", {}),
            client_ref=data.get("client_ref"),
        )


class TaskListQuerySerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=TaskState.choices, required=False)
    client_ref = serializers.CharField(required=False, max_length=128)
    cursor = serializers.CharField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


def task_summary(task: Task) -> dict[str, Any]:
    """The fields every view of a task shows; never the input or output."""
    meta = services.read_meta(task)
    return {
        "id": str(task.id),
        "object": "task",
        "model": task.model.name,
        "status": task.state,
        "priority": task.priority,
        "params": {
            "max_tokens": task.max_tokens,
            "temperature": task.temperature,
            "top_p": task.top_p,
            "seed": task.seed,
        },
        "metadata": meta.get("metadata") or {},
        "client_ref": meta.get("client_ref"),
        "usage": task.usage,
        "error": {"code": task.error_code, "message": task.error_message} if task.error_code and task.is_terminal else None,
        "attempt": task.attempt,
        "cancel_requested": task.cancel_requested,
        "erased": task.erased_at is not None,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
    }


def task_detail(task: Task) -> dict[str, Any]:
    """The summary plus the input, and the output once the task has finished."""
    body = task_summary(task)
    payload = services.read_input(task)
    if payload is not None:
        body["input"] = {k: payload[k] for k in ("prompt", "messages") if payload.get(k) is not None}
        body["params"]["stop"] = payload.get("stop") or []
    else:
        body["input"] = None
    body["output"] = services.read_output(task) if task.is_terminal else None
    body.update(task_wait(task))
    return body
