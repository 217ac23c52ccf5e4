"""Operator endpoints for workers (list, drain, undrain) and model placement. Staff only."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.models import LLMModel
from apps.core.errors import NotFound, UnknownModel
from apps.core.openapi import api_responses
from apps.tenants.permissions import OPERATOR_AUTHENTICATION, IsStaffOperator
from apps.workers import services
from apps.workers.api.serializers import (
    ModelPlacementListSerializer,
    WorkerListQuerySerializer,
    WorkerListSerializer,
    WorkerSerializer,
    model_placement_representation,
    worker_representation,
)
from apps.workers.models import Worker


class OperatorView(APIView):
    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [IsStaffOperator]


class WorkerListView(OperatorView):
    @extend_schema(
        tags=["ops"],
        parameters=[OpenApiParameter("model", str, description="only workers taking this model's tasks now")],
        responses=api_responses({200: WorkerListSerializer}, 400),
    )
    def get(self, request: Request) -> Response:
        query = WorkerListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        workers = Worker.objects.all()
        if "model" in query.validated_data:
            model = LLMModel.objects.filter(name=query.validated_data["model"]).first()
            if model is None:
                raise UnknownModel("no model with this name")
            workers = services.workers_for_model(model)
        workers = workers.prefetch_related("models", "version_placements__version__model")
        return Response({"object": "list", "data": [worker_representation(worker) for worker in workers]})


class WorkerChangeView(OperatorView):
    """POST on one worker; subclasses name the service function applied to it."""

    change: Callable[[Worker], Worker]

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


class ModelPlacementListView(OperatorView):
    """Every model with its versions: which is current, where each is placed (and how many
    copies the replica scaler wants), and why one that no worker can host is left out
    (``placement_error``)."""

    @extend_schema(tags=["ops"], responses=api_responses({200: ModelPlacementListSerializer}))
    def get(self, request: Request) -> Response:
        models = LLMModel.objects.select_related("current_version").prefetch_related(
            "versions__placements__worker", "placements__worker"
        )
        unfinished = services.unfinished_task_counts()
        targets = services.replica_targets()
        return Response(
            {
                "object": "list",
                "data": [model_placement_representation(model, unfinished, targets) for model in models],
            }
        )
