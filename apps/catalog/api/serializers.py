"""The catalog's request and response shapes, as /api/schema/ describes them (no logic beyond shape)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from apps.catalog.models import LLMModel
from apps.core.openapi import list_of, object_kind
from apps.core.serializers import StrictSerializer


class CatalogModelSerializer(serializers.Serializer):
    """A model the calling tenant may use (OpenAI's model object, with versions)."""

    id = serializers.CharField(help_text="the model's name, as tasks name it")
    object = object_kind("model")
    description = serializers.CharField(allow_blank=True)
    adapter = serializers.CharField()
    current_version = serializers.CharField(
        allow_null=True, help_text='what the plain name runs; pin another with "name@version"'
    )
    versions = serializers.ListField(child=serializers.CharField())
    owned_by = serializers.CharField()
    created = serializers.IntegerField(help_text="Unix time")


CatalogModelListSerializer = list_of(CatalogModelSerializer)


# --- Operators: registering and changing models (POST/PATCH /api/v1/ops/models, add_model) ----


PRICE_QUANTUM = Decimal("0.000001")


def _time_slice(**options: Any) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0, max_value=1_000_000, allow_null=True,
        help_text="tokens a generation runs before it yields its slot to a waiting task of its class "
                  "(time slicing, docs/scheduling.md); 0: never; null: the platform's default (TIME_SLICE_TOKENS)",
        **options,
    )


def _price(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=0, allow_null=True, coerce_to_string=True,
        help_text="per 1,000 tokens, in the operator's currency (null: no price)", **kwargs,
    )


class ModelCreateSerializer(StrictSerializer):
    """POST /api/v1/ops/models: what ``manage.py add_model`` takes."""

    name = serializers.CharField(max_length=100, help_text="how tasks name it: lower-case letters, digits, . _ -")
    adapter = serializers.CharField(
        max_length=64,
        help_text='a registered model adapter, e.g. echo, transformers; "router": a routed model, whose '
        "adapter_config lists its candidates and rules (docs/scheduling.md)",
    )
    adapter_config = serializers.DictField(
        required=False, default=dict, help_text="the adapter's settings; the adapter validates them"
    )
    description = serializers.CharField(required=False, default="", allow_blank=True)
    is_public = serializers.BooleanField(required=False, default=False, help_text="every tenant may use it")
    tenants = serializers.ListField(
        child=serializers.SlugField(), required=False, default=list, help_text="slugs of the tenants granted it"
    )
    enabled = serializers.BooleanField(required=False, default=True)
    price_prompt_per_1k = _price(required=False, default=None)
    price_completion_per_1k = _price(required=False, default=None)
    time_slice_tokens = _time_slice(required=False, default=None)


class ModelChangeSerializer(StrictSerializer):
    """PATCH /api/v1/ops/models/{name}: only the fields given change; ``tenants`` replaces the grants."""

    adapter = serializers.CharField(required=False, max_length=64)
    adapter_config = serializers.DictField(required=False, help_text="replaces the whole config")
    description = serializers.CharField(required=False, allow_blank=True)
    is_public = serializers.BooleanField(required=False)
    tenants = serializers.ListField(child=serializers.SlugField(), required=False)
    enabled = serializers.BooleanField(required=False)
    price_prompt_per_1k = _price(required=False)
    price_completion_per_1k = _price(required=False)
    time_slice_tokens = _time_slice(required=False)


def operator_model_representation(model: LLMModel) -> dict[str, Any]:
    """A model as operators see it (``allowed_tenants`` and ``current_version`` best
    loaded with it): what add_model prints, and the start of the ops API's model object."""
    return {
        "object": "model",
        "name": model.name,
        "description": model.description,
        "adapter": model.adapter,
        "adapter_config": model.adapter_config,
        "enabled": model.enabled,
        "is_public": model.is_public,
        "tenants": sorted(tenant.slug for tenant in model.allowed_tenants.all()),
        "current_version": model.current_version.version if model.current_version else None,
        "created_at": model.created_at,
        "price_prompt_per_1k": _price_text(model.price_prompt_per_1k),
        "price_completion_per_1k": _price_text(model.price_completion_per_1k),
        "time_slice_tokens": model.time_slice_tokens,
    }


def _price_text(price: Decimal | None) -> str | None:
    # As stored (6 places), whether read back or just given.
    return None if price is None else str(Decimal(price).quantize(PRICE_QUANTUM))


class OperatorModelSerializer(serializers.Serializer):
    """A model as operators see it."""

    object = object_kind("model")
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    adapter = serializers.CharField()
    adapter_config = serializers.DictField(help_text="the adapter's settings (no secrets: keys go in env variables)")
    enabled = serializers.BooleanField()
    is_public = serializers.BooleanField()
    tenants = serializers.ListField(child=serializers.SlugField(), help_text="the tenants granted it, besides public")
    current_version = serializers.CharField(allow_null=True, help_text="what the plain name runs")
    created_at = serializers.DateTimeField()
    price_prompt_per_1k = _price()
    price_completion_per_1k = _price()
    time_slice_tokens = _time_slice()
