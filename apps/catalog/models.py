"""The LLM models the platform serves and who may use them."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from apps.tenants.models import Tenant

model_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]{0,99}$",
    "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
)


class LLMModelQuerySet(models.QuerySet):
    def visible_to(self, tenant: Tenant) -> "LLMModelQuerySet":
        """Enabled models this tenant may use: public ones and those granted to it."""
        return self.filter(enabled=True).filter(
            models.Q(is_public=True) | models.Q(allowed_tenants=tenant)
        ).distinct()


class LLMModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    description = models.TextField(blank=True)
    adapter = models.CharField(max_length=64, help_text="name of a registered model adapter")
    adapter_config = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    is_public = models.BooleanField(default=False, help_text="every tenant may use it")
    allowed_tenants = models.ManyToManyField(Tenant, blank=True, related_name="granted_models")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = LLMModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "LLM model"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from apps.catalog.plugins import registry

        if self.adapter not in registry.adapter_names:
            raise ValidationError(
                {"adapter": f"unknown adapter; registered: {', '.join(registry.adapter_names) or 'none'}"}
            )
        if not isinstance(self.adapter_config, dict):
            raise ValidationError({"adapter_config": "must be a JSON object"})
