"""Task endpoints: validation in serializers, work in apps.tasks.services."""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.errors import InvalidInput, NotFound
from apps.core.openapi import BODY_ERRORS, RATE_LIMIT_HEADERS, api_responses
from apps.tasks import services, workflows
from apps.tasks.api.serializers import (
    TaskCreateSerializer,
    TaskDetailSerializer,
    TaskListQuerySerializer,
    TaskPageSerializer,
    TaskSummarySerializer,
    WorkflowCreatedSerializer,
    WorkflowCreateSerializer,
    WorkflowDetailSerializer,
    task_detail,
    task_summary,
    workflow_created,
    workflow_detail,
)
from apps.tasks.models import Task, Workflow
from apps.tenants.permissions import api_key_of, tenant_of
from llmagentos.api_errors import rate_limit_headers


class TaskCursorPagination(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        # NotFound: DRF could not decode the cursor. Django's ValidationError: it
        # decoded, but its position is not a timestamp (a hand-made cursor).
        except (exceptions.NotFound, DjangoValidationError):
            raise InvalidInput("the cursor is not valid", code="invalid_cursor", param="cursor") from None


IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotency_key_of(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.match(key):
        raise InvalidInput("Idempotency-Key must be 1-255 printable ASCII characters", param="Idempotency-Key")
    return key


class TaskViewSet(viewsets.ViewSet):
    lookup_value_converter = "id"  # apps.core.converters: a UUID, else 404 before the view
    required_scopes = {
        "list": "tasks:read",
        "retrieve": "tasks:read",
        "create": "tasks:write",
        "destroy": "tasks:write",
        "cancel": "tasks:write",
    }

    def _tenant_tasks(self, request: Request):
        return Task.objects.for_tenant(tenant_of(request)).select_related(
            "model", "model_version", "tenant", "routed_from"
        )

    def _get_task(self, request: Request, pk: uuid.UUID) -> Task:
        return services.task_of(tenant_of(request), pk)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="filter by state"),
            OpenApiParameter("client_ref", str, description="filter by your own reference"),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        operation_id="tasks_list",
        responses=api_responses({200: TaskPageSerializer}, 400),
    )
    def list(self, request: Request) -> Response:
        query = TaskListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        tasks = self._tenant_tasks(request)
        if "client_ref" in query.validated_data:
            client_ref = query.validated_data["client_ref"]
            tasks = services.tasks_with_client_ref(tenant_of(request), client_ref).select_related(
                "model", "tenant", "routed_from"
            )
        if "status" in query.validated_data:
            tasks = tasks.filter(state=query.validated_data["status"])
        paginator = TaskCursorPagination()
        page = paginator.paginate_queryset(tasks, request, view=self)
        return paginator.get_paginated_response([task_summary(task) for task in page])

    @extend_schema(
        request=TaskCreateSerializer,
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, description="retry-safe submission"),
            OpenApiParameter(
                "Idempotent-Replayed", str, OpenApiParameter.HEADER, response=[201], enum=["true"],
                description="the task an earlier request with this Idempotency-Key made",
            ),
            *RATE_LIMIT_HEADERS,
        ],
        responses=api_responses({201: TaskDetailSerializer}, BODY_ERRORS, 402, 409, 429),
    )
    def create(self, request: Request) -> Response:
        serializer = TaskCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task_request = serializer.to_request()
        submission = services.submit_task(
            tenant_of(request), api_key_of(request), task_request, idempotency_key_of(request)
        )
        # A task just made without parents has none: no need to read them back.
        no_parents: list[str] | None = [] if not (submission.replayed or task_request.depends_on) else None
        response = Response(task_detail(submission.task, depends_on=no_parents), status=status.HTTP_201_CREATED)
        if submission.replayed:
            response["Idempotent-Replayed"] = "true"
        for name, value in rate_limit_headers(submission.rate_limits).items():
            response[name] = value
        return response

    @extend_schema(responses=api_responses({200: TaskDetailSerializer}, 404))
    def retrieve(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(task_detail(self._get_task(request, pk)))

    @extend_schema(responses=api_responses({204: None}, 404))
    def destroy(self, request: Request, pk: uuid.UUID) -> Response:
        services.erase_task(self._get_task(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=api_responses({200: TaskSummarySerializer}, 404))
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: uuid.UUID) -> Response:
        task = services.cancel_task(self._get_task(request, pk))
        return Response(task_summary(task))


class WorkflowViewSet(viewsets.ViewSet):
    """Graphs of tasks submitted at once; each node is a task like any other."""

    lookup_value_converter = "id"  # apps.core.converters: a UUID, else 404 before the view
    required_scopes = {"create": "tasks:write", "retrieve": "tasks:read", "cancel": "tasks:write"}

    def _get_workflow(self, request: Request, pk: uuid.UUID) -> Workflow:
        workflow = Workflow.objects.for_tenant(tenant_of(request)).select_related("tenant").filter(pk=pk).first()
        if workflow is None:
            # Another tenant's workflow is answered exactly like a missing one.
            raise NotFound("no workflow with this id", code="workflow_not_found")
        return workflow

    @extend_schema(
        request=WorkflowCreateSerializer,
        parameters=RATE_LIMIT_HEADERS,
        responses=api_responses({201: WorkflowCreatedSerializer}, BODY_ERRORS, 402, 429),
    )
    def create(self, request: Request) -> Response:
        serializer = WorkflowCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        submission = workflows.submit_workflow(tenant_of(request), api_key_of(request), serializer.to_nodes())
        response = Response(workflow_created(submission), status=status.HTTP_201_CREATED)
        for name, value in rate_limit_headers(submission.rate_limits).items():
            response[name] = value
        return response

    @extend_schema(responses=api_responses({200: WorkflowDetailSerializer}, 404))
    def retrieve(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(workflow_detail(self._get_workflow(request, pk)))

    @extend_schema(request=None, responses=api_responses({200: WorkflowDetailSerializer}, 404))
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: uuid.UUID) -> Response:
        workflow = self._get_workflow(request, pk)
        workflows.cancel_workflow(workflow)
        return Response(workflow_detail(workflow))
