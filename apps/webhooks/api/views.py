"""A tenant's webhook settings, secret and deliveries: work in apps.webhooks.services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.openapi import BODY_ERRORS, api_responses
from apps.tenants.models import Scope
from apps.tenants.permissions import tenant_of
from apps.webhooks import services
from apps.webhooks.api.serializers import (
    DeliveryListSerializer,
    DeliveryQuerySerializer,
    WebhookSecretSerializer,
    WebhookSettingsChangeSerializer,
    WebhookSettingsSerializer,
    delivery_representation,
    settings_representation,
)

# The newest deliveries a list shows (filter by task for an older one's).
DELIVERY_LIST_LIMIT = 100


class WebhookSettingsView(APIView):
    # The secret and where events go are the tenant's credentials: key managers only.
    required_scope = Scope.KEYS_MANAGE.value

    @extend_schema(tags=["webhooks"], responses=api_responses({200: WebhookSettingsSerializer}))
    def get(self, request: Request) -> Response:
        return Response(settings_representation(services.settings_of(tenant_of(request))))

    @extend_schema(
        tags=["webhooks"], request=WebhookSettingsChangeSerializer,
        responses=api_responses({200: WebhookSettingsSerializer}, BODY_ERRORS),
    )
    def patch(self, request: Request) -> Response:
        body = WebhookSettingsChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(settings_representation(services.set_url(tenant_of(request), body.validated_data["url"])))


class WebhookSecretView(APIView):
    required_scope = Scope.KEYS_MANAGE.value

    @extend_schema(
        tags=["webhooks"], operation_id="webhooks_secret_rotate", request=None,
        responses=api_responses({200: WebhookSecretSerializer}),
    )
    def post(self, request: Request) -> Response:
        """Replace the signing secret (every later attempt is signed with the new one); shown once."""
        tenant = tenant_of(request)
        secret = services.rotate_secret(tenant)
        row = services.settings_of(tenant)
        return Response({"object": "webhook_secret", "secret": secret, "created_at": row.secret_created_at})


class DeliveryListView(APIView):
    required_scope = Scope.TASKS_READ.value

    @extend_schema(
        tags=["webhooks"], parameters=[DeliveryQuerySerializer],
        responses=api_responses({200: DeliveryListSerializer}, 400),
    )
    def get(self, request: Request) -> Response:
        query = DeliveryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        deliveries = services.deliveries_of(tenant_of(request))
        if "task" in query.validated_data:
            deliveries = deliveries.filter(task_id=query.validated_data["task"])
        if "status" in query.validated_data:
            deliveries = deliveries.filter(status=query.validated_data["status"])
        shown = [delivery_representation(d) for d in deliveries.order_by("-created_at")[:DELIVERY_LIST_LIMIT]]
        return Response({"object": "list", "data": shown})
