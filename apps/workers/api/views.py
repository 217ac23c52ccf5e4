"""Operator endpoints for workers (list, drain, undrain) and models (placement list, register, change).
Staff with the admin's permission for the same action (HasOperatorPermission)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog import services as catalog_services
from apps.catalog.api.serializers import ModelChangeSerializer, ModelCreateSerializer
from apps.catalog.models import LLMModel
from apps.core.errors import NotFound, UnknownModel
from apps.core.openapi import BODY_ERRORS, api_responses
from apps.tenants.permissions import OPERATOR_AUTHENTICATION, HasOperatorPermission
from apps.workers import services
from apps.workers.api.serializers import (
    ModelPlacementListSerializer,
    ModelPlacementSerializer,
    WorkerListQuerySerializer,
    WorkerListSerializer,
    WorkerSerializer,
    model_placement_representation,
    worker_representation,
)
from apps.workers.models import Worker, in_live_views


class OperatorView(APIView):
    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOperatorPermission]
    operator_permissions: dict[str, str]  # HTTP method -> the admin's permission for the same action


class WorkerListView(OperatorView):
    operator_permissions = {"GET": "workers.view_worker"}

    @extend_schema(
        tags=["ops"],
        parameters=[
            OpenApiParameter("model", str, description="only workers taking this model's tasks now"),
            OpenApiParameter(
                "history", bool,
                description="also the workers lost or stopped longer than LOST_WORKER_RETENTION_SECONDS ago "
                "(left out by default)",
            ),
        ],
        responses=api_responses({200: WorkerListSerializer}, 400),
    )
    def get(self, request: Request) -> Response:
        query = WorkerListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        workers: QuerySet[Worker] = Worker.objects.all()
        if "model" in query.validated_data:
            model = LLMModel.objects.filter(name=query.validated_data["model"]).first()
            if model is None:
                raise UnknownModel("no model with this name")
            workers = services.workers_for_model(model)
        if not query.validated_data["history"]:
            workers = workers.filter(in_live_views())
        workers = workers.prefetch_related("models", "version_placements__version__model")
        return Response({"object": "list", "data": [worker_representation(worker) for worker in workers]})


class WorkerChangeView(OperatorView):
    """POST on one worker; subclasses name the service function applied to it."""

    change: Callable[[Worker], Worker]
    operator_permissions = {"POST": "workers.change_worker"}  # the admin's drain actions need it too

    # 409: the worker is stopped.
    @extend_schema(tags=["ops"], request=None, responses=api_responses({200: WorkerSerializer}, 404, 409))
    def post(self, request: Request, worker_id: uuid.UUID) -> Response:
        worker = Worker.objects.filter(pk=worker_id).first()
        if worker is None:
            raise NotFound("no worker with this id", code="worker_not_found")
        return Response(worker_representation(type(self).change(worker)))


class WorkerDrainView(WorkerChangeView):
    """Take no new tasks; finish those in flight. The worker confirms with state "drained"."""

    change = staticmethod(services.drain)


class WorkerUndrainView(WorkerChangeView):
    """Take tasks again."""

    change = staticmethod(services.undrain)


def _models_with_placements() -> QuerySet[LLMModel]:
    return LLMModel.objects.select_related("current_version").prefetch_related(
        "allowed_tenants", "versions__placements__worker", "placements__worker"
    )


def _placed(model: LLMModel) -> dict[str, Any]:
    """One model's representation, read again after a change (and the placement it caused)."""
    model = _models_with_placements().get(pk=model.pk)
    return model_placement_representation(model, services.unfinished_task_counts(), services.replica_targets())


class ModelPlacementListView(OperatorView):
    """Every model with its versions: which is current, where each is placed (and how many
    copies the replica scaler wants), and why one that no worker can host is left out
    (``placement_error``). POST registers a model, as ``manage.py add_model`` does."""

    operator_permissions = {"GET": "catalog.view_llmmodel", "POST": "catalog.add_llmmodel"}

    @extend_schema(tags=["ops"], responses=api_responses({200: ModelPlacementListSerializer}))
    def get(self, request: Request) -> Response:
        models = _models_with_placements()
        unfinished = services.unfinished_task_counts()
        targets = services.replica_targets()
        return Response(
            {
                "object": "list",
                "data": [model_placement_representation(model, unfinished, targets) for model in models],
            }
        )

    # 400: a bad field, an unknown adapter or a config the adapter refuses (its message); 409: the name is in use.
    @extend_schema(
        tags=["ops"],
        request=ModelCreateSerializer,
        responses=api_responses({201: ModelPlacementSerializer}, 409, BODY_ERRORS),
    )
    def post(self, request: Request) -> Response:
        body = ModelCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = body.validated_data
        model = catalog_services.create_model(
            fields["name"],
            fields["adapter"],
            fields["adapter_config"],
            description=fields["description"],
            is_public=fields["is_public"],
            tenants=fields["tenants"],
            enabled=fields["enabled"],
            price_prompt_per_1k=fields["price_prompt_per_1k"],
            price_completion_per_1k=fields["price_completion_per_1k"],
            time_slice_tokens=fields["time_slice_tokens"],
        )
        return Response(_placed(model), status=201)


class ModelPlacementDetailView(OperatorView):
    """PATCH changes a model: only the fields given (``tenants`` replaces the grants)."""

    operator_permissions = {"PATCH": "catalog.change_llmmodel"}

    @extend_schema(
        tags=["ops"],
        request=ModelChangeSerializer,
        responses=api_responses({200: ModelPlacementSerializer}, 404, BODY_ERRORS),
    )
    def patch(self, request: Request, name: str) -> Response:
        model = LLMModel.objects.filter(name=name).first()
        if model is None:
            raise NotFound(f"no model named {name!r}", code="model_not_found")
        body = ModelChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(_placed(catalog_services.update_model(model, body.validated_data)))
