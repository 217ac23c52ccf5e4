"""Task request validation and representation (no logic beyond shape)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from apps.core.openapi import object_kind
from apps.core.serializers import StrictSerializer
from apps.tasks import dependencies, graph, lifecycle, services, workflows
from apps.tasks.models import Priority, Task, TaskState, Workflow
from apps.tasks.payloads import read_input, read_meta, read_output

MAX_PROMPT_CHARS = graph.MAX_PROMPT_CHARS
MAX_MESSAGES = 256
MAX_TOKENS_LIMIT = 32_768
MAX_STOP_SEQUENCES = 4
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512

CHAT_ROLES = ("system", "user", "assistant", "tool")


class MessageSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=CHAT_ROLES)
    content = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=MAX_PROMPT_CHARS)
    name = serializers.CharField(required=False, max_length=64)


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP_SEQUENCES}]}
)
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
        "too_long": (
            f"keys are at most {MAX_METADATA_KEY_CHARS} and values at most {MAX_METADATA_VALUE_CHARS} characters"
        ),
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
    depends_on = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=dependencies.MAX_PARENTS
    )
    # Checked further (a public address) by apps.webhooks when the task is submitted.
    webhook_url = serializers.URLField(required=False, allow_null=True, max_length=2000)
    webhook_include_output = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_prompt = "prompt" in attrs
        has_messages = "messages" in attrs
        if has_prompt == has_messages:
            raise serializers.ValidationError(
                {
                    "prompt": [
                        serializers.ErrorDetail(
                            "give exactly one of 'prompt' and 'messages'", code="prompt_or_messages"
                        )
                    ]
                }
            )
        # Only a task in a graph has its {{KEY.output}} references substituted;
        # elsewhere such text is plain text, as it always was.
        if "depends_on" in attrs:
            parents = {str(parent) for parent in attrs["depends_on"]}
            for param, key in graph.input_references(attrs.get("prompt"), attrs.get("messages")):
                if key not in parents:
                    message = f"{{{{{key}.output}}}} refers to {key!r}, which is not in depends_on"
                    error = serializers.ErrorDetail(message, code="unknown_reference")
                    raise serializers.ValidationError({param: [error]})
        return attrs

    def to_request(self) -> services.TaskRequest:
        return self.request_from(self.validated_data)

    @staticmethod
    def request_from(data: dict[str, Any]) -> services.TaskRequest:
        """The service's request from validated data (also each workflow node's)."""
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
            depends_on=tuple(dict.fromkeys(str(parent) for parent in data.get("depends_on", ()))),
            webhook_url=data.get("webhook_url"),
            webhook_include_output=data.get("webhook_include_output", False),
        )


class TaskListQuerySerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=TaskState.choices, required=False)
    client_ref = serializers.CharField(required=False, max_length=128)
    cursor = serializers.CharField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class WorkflowNodeSerializer(TaskCreateSerializer):
    """A task of POST /api/v1/workflows: every task field, a name, parents by name."""

    name = serializers.RegexField(
        graph.NODE_NAME_PATTERN,
        error_messages={"invalid": "a node name is 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"},
    )
    # Always present (default), so a reference in a root node is refused too.
    depends_on = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list,
        max_length=workflows.MAX_WORKFLOW_NODES,
    )


def _node_error(index: int, field: str, message: str, code: str) -> serializers.ValidationError:
    # Raised from validate_nodes, so the param becomes nodes.<index>.<field>.
    return serializers.ValidationError({str(index): {field: [serializers.ErrorDetail(message, code=code)]}})


class WorkflowCreateSerializer(StrictSerializer):
    nodes = serializers.ListField(
        child=WorkflowNodeSerializer(), min_length=1, max_length=workflows.MAX_WORKFLOW_NODES
    )

    def validate_nodes(self, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        position: dict[str, int] = {}
        for index, node in enumerate(nodes):
            if node["name"] in position:
                raise _node_error(
                    index, "name", f"duplicate node name {node['name']!r} (also nodes.{position[node['name']]})",
                    "duplicate_name",
                )
            position[node["name"]] = index
        for index, node in enumerate(nodes):
            unknown = [parent for parent in node["depends_on"] if parent not in position]
            if unknown:
                raise _node_error(index, "depends_on", f"no node named {unknown[0]!r} in this workflow", "unknown_node")
        cycle = graph.find_cycle({node["name"]: node["depends_on"] for node in nodes})
        if cycle:
            raise _node_error(
                position[cycle[0]], "depends_on",
                f"dependency cycle: {' -> '.join(cycle)} (each depends on the next)", "workflow_cycle",
            )
        return nodes

    def to_nodes(self) -> list[workflows.WorkflowNode]:
        return [
            workflows.WorkflowNode(name=node["name"], request=TaskCreateSerializer.request_from(node))
            for node in self.validated_data["nodes"]
        ]


def workflow_created(submission: workflows.WorkflowSubmission) -> dict[str, Any]:
    return {
        "id": str(submission.workflow.id),
        "object": "workflow",
        "created_at": submission.workflow.created_at,
        "tasks": {name: str(task_id) for name, task_id in submission.task_ids.items()},
    }


def workflow_detail(workflow: Workflow) -> dict[str, Any]:
    tasks = workflows.workflow_tasks(workflow)
    names = {task.pk: name for name, task in tasks.items()}
    return {
        "id": str(workflow.id),
        "object": "workflow",
        "created_at": workflow.created_at,
        "status": workflows.workflow_status(tasks.values()),
        "tasks": {
            name: {
                "id": str(task.pk),
                "status": task.state,
                "depends_on": [names[link.parent_id] for link in task.parent_links.all()],
                "error": _error_of(task),
                "started_at": task.started_at,
                "finished_at": task.finished_at,
            }
            for name, task in tasks.items()
        },
    }


def _error_of(task: Task) -> dict[str, str] | None:
    return {"code": task.error_code, "message": task.error_message} if task.error_code and task.is_terminal else None


def task_summary(task: Task) -> dict[str, Any]:
    """The fields every view of a task shows; never the input or output."""
    meta = read_meta(task)
    return {
        "id": str(task.id),
        "object": "task",
        # As the tenant named it: a routed model's name, with the model that runs in routed_to.
        "model": task.routed_from.name if task.routed_from is not None else task.model.name,
        "routed_to": task.model.name if task.routed_from is not None else None,
        # The version it runs, fixed at submission (null: a model without versions).
        "model_version": task.model_version.version if task.model_version is not None else None,
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
        "error": _error_of(task),
        "attempt": task.attempt,
        "cancel_requested": task.cancel_requested,
        "erased": task.erased_at is not None,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "workflow": str(task.workflow_id) if task.workflow_id else None,
    }


def task_detail(task: Task, depends_on: list[str] | None = None) -> dict[str, Any]:
    """The summary plus the input, and the output once the task has finished.
    ``depends_on``: the parent ids when the caller knows them (a submission just
    made), to save reading them back."""
    body = task_summary(task)
    payload = read_input(task)
    if payload is not None:
        body["input"] = {k: payload[k] for k in ("prompt", "messages") if payload.get(k) is not None}
        body["params"]["stop"] = payload.get("stop") or []
    else:
        body["input"] = None
    body["output"] = read_output(task) if task.is_terminal else None
    if depends_on is None:
        depends_on = [str(link.parent_id) for link in task.parent_links.all()]
    body["depends_on"] = depends_on
    body.update(lifecycle.estimate_wait(task))
    return body


# --- Response shapes: what the functions above build, as /api/schema/ describes it -----------


class TokenUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class TaskErrorSerializer(serializers.Serializer):
    """Why a finished task did not succeed."""

    code = serializers.CharField()
    message = serializers.CharField()


class TaskParamsSerializer(serializers.Serializer):
    max_tokens = serializers.IntegerField()
    temperature = serializers.FloatField(allow_null=True)
    top_p = serializers.FloatField(allow_null=True)
    seed = serializers.IntegerField(allow_null=True)
    stop = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="in a task's detail, while its input is kept"
    )


class TaskSummarySerializer(serializers.Serializer):
    """A task without its input or output."""

    id = serializers.UUIDField()
    object = object_kind("task")
    model = serializers.CharField(help_text="the model as submitted (a routed model: the router's name)")
    routed_to = serializers.CharField(
        allow_null=True, help_text="a routed model's candidate that runs the task (null: not routed)"
    )
    model_version = serializers.CharField(allow_null=True, help_text="the version it runs, fixed at submission")
    status = serializers.ChoiceField(choices=TaskState.choices)
    priority = serializers.ChoiceField(choices=Priority.choices)
    params = TaskParamsSerializer()
    metadata = serializers.DictField(child=serializers.CharField())
    client_ref = serializers.CharField(allow_null=True)
    usage = TokenUsageSerializer(allow_null=True)
    error = TaskErrorSerializer(allow_null=True)
    attempt = serializers.IntegerField()
    cancel_requested = serializers.BooleanField()
    erased = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    workflow = serializers.UUIDField(allow_null=True)


class TaskInputSerializer(serializers.Serializer):
    """The prompt or the messages, as submitted (one of the two)."""

    prompt = serializers.CharField(required=False)
    messages = MessageSerializer(many=True, required=False)


class TaskDetailSerializer(TaskSummarySerializer):
    """A task with its input (null once erased) and its output (null until it has finished)."""

    input = TaskInputSerializer(allow_null=True)
    output = serializers.CharField(allow_null=True)
    depends_on = serializers.ListField(child=serializers.UUIDField())
    queue_position = serializers.IntegerField(allow_null=True, help_text="1 for the next to start; null unless queued")
    estimated_start_seconds = serializers.FloatField(allow_null=True)


@extend_schema_serializer(many=False)  # the page itself, though the list action returns it
class TaskPageSerializer(serializers.Serializer):
    """One page of tasks, newest first; follow ``next`` for the rest."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = TaskSummarySerializer(many=True)


class WorkflowCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = object_kind("workflow")
    created_at = serializers.DateTimeField()
    tasks = serializers.DictField(child=serializers.UUIDField(), help_text="each node's task id, by node name")


class WorkflowNodeStateSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=TaskState.choices)
    depends_on = serializers.ListField(child=serializers.CharField(), help_text="parent node names")
    error = TaskErrorSerializer(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


# What workflows.workflow_status answers for a whole graph.
WORKFLOW_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class WorkflowDetailSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = object_kind("workflow")
    created_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=WORKFLOW_STATUSES)
    tasks = serializers.DictField(child=WorkflowNodeStateSerializer(), help_text="by node name")
