"""GET /api/v1/models: the models the calling tenant may use."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.api.serializers import CatalogModelListSerializer
from apps.catalog.models import LLMModel
from apps.core.openapi import api_responses
from apps.tenants.permissions import tenant_of


class ModelListView(APIView):
    required_scope = "models:read"

    @extend_schema(responses=api_responses({200: CatalogModelListSerializer}))
    def get(self, request: Request) -> Response:
        # Versions of the visible models only: a private model's are as hidden as the model.
        models = LLMModel.objects.visible_to(tenant_of(request)).select_related("current_version").prefetch_related(
            "versions"
        )
        return Response(
            {
                "object": "list",
                "data": [
                    {
                        "id": model.name,
                        "object": "model",
                        "description": model.description,
                        "adapter": model.adapter,
                        # Pin one with "model": "name@version"; the plain name runs the current one.
                        "current_version": model.current_version.version if model.current_version else None,
                        "versions": sorted(v.version for v in model.versions.all()),
                        "owned_by": "llmagentos",
                        "created": int(model.created_at.timestamp()),
                    }
                    for model in models
                ],
            }
        )
