"""Webhook settings and deliveries as a tenant sees them (no logic beyond shape)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.openapi import list_of, object_kind
from apps.core.serializers import StrictSerializer
from apps.webhooks.models import Delivery, DeliveryStatus, EventType, TenantWebhook


class WebhookSettingsChangeSerializer(StrictSerializer):
    url = serializers.URLField(
        allow_null=True, allow_blank=True, max_length=2000,
        help_text="where every task that names no webhook_url of its own is reported; null or empty: nowhere",
    )


class WebhookSettingsSerializer(serializers.Serializer):
    object = object_kind("webhook_settings")
    url = serializers.CharField(allow_null=True)
    secret_created_at = serializers.DateTimeField(
        allow_null=True, help_text="when the signing secret in force was made (POST /api/v1/webhooks/secret)"
    )


class WebhookSecretSerializer(serializers.Serializer):
    object = object_kind("webhook_secret")
    secret = serializers.CharField(help_text="the HMAC-SHA256 key of the signatures; shown only here, once")
    created_at = serializers.DateTimeField()


class DeliveryQuerySerializer(StrictSerializer):
    task = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)


class DeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="the event id, the same on every attempt (X-LLMAgentOS-Event-Id)")
    object = object_kind("webhook_delivery")
    type = serializers.ChoiceField(choices=EventType.choices)
    task = serializers.UUIDField(allow_null=True)
    target = serializers.CharField(help_text="scheme://host[:port] of the callback URL")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="null unless pending")
    delivered_at = serializers.DateTimeField(allow_null=True)


DeliveryListSerializer = list_of(DeliverySerializer)


def settings_representation(row: TenantWebhook) -> dict[str, Any]:
    return {"object": "webhook_settings", "url": row.url or None, "secret_created_at": row.secret_created_at}


def delivery_representation(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": str(delivery.pk),
        "object": "webhook_delivery",
        "type": delivery.event_type,
        "task": str(delivery.task_id) if delivery.task_id else None,
        "target": delivery.target,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "next_attempt_at": delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None,
        "delivered_at": delivery.delivered_at,
    }
