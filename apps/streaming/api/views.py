"""POST /api/v1/tasks/{id}/stream-token: a short-lived token a browser passes as
the WebSocket subprotocol ``token.<token>`` (apps.streaming.tokens)."""

from __future__ import annotations

import uuid

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.openapi import api_responses
from apps.streaming.api.serializers import StreamTokenSerializer
from apps.streaming.tokens import issue_stream_token
from apps.tasks.services import task_of
from apps.tenants.permissions import tenant_of


class StreamTokenView(APIView):
    required_scope = "tasks:read"

    @extend_schema(
        operation_id="tasks_stream_token_create", tags=["tasks"], request=None,
        responses=api_responses({200: StreamTokenSerializer}, 404),
    )
    def post(self, request: Request, task_id: uuid.UUID) -> Response:
        task = task_of(tenant_of(request), task_id)
        token = issue_stream_token(task.id, task.tenant_id, request.auth.pk)
        return Response({"token": token, "expires_in": settings.STREAM_TOKEN_SECONDS})
