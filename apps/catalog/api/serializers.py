"""The catalog's response shapes, as /api/schema/ describes them (no logic beyond shape)."""

from __future__ import annotations

from rest_framework import serializers

from apps.core.openapi import list_of, object_kind


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
