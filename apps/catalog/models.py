"""The LLM models the platform serves and who may use them."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from apps.catalog.devices import Device
from apps.catalog.plugins import registry
from apps.catalog.resources import VersionError, complete_resource_needs
from apps.catalog.routing import ROUTER_ADAPTER, RouterConfigError, parse_config
from apps.tenants.models import Tenant

model_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]{0,99}$",
    "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
)
# No "@": a task's ``model`` is "name" or "name@version".
version_label_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]{0,63}$",
    "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64)",
)


class LLMModelQuerySet(models.QuerySet):
    def visible_to(self, tenant: Tenant) -> LLMModelQuerySet:
        """Enabled models this tenant may use: public ones and those granted to it.

        apps.catalog.statements.visible_model writes the same rule in SQL for the
        submission path (tests/integration/test_model_statement.py): change both."""
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
    # The alias: the version a task naming just the model runs. None: the model
    # runs from its own adapter_config, as a model without versions does.
    # RESTRICT: the current version cannot be deleted on its own (only with its model).
    current_version = models.ForeignKey(
        "ModelVersion", on_delete=models.RESTRICT, null=True, blank=True, related_name="current_of"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Operator-set prices per thousand tokens, in the operator's currency (null: no price):
    # the usage report's cost column and routed models' "price" strategy read them.
    # Time slicing (docs/scheduling.md): with more runnable generations than slots, a
    # generation of an adapter that can suspend gives its slot to a waiting one of its
    # class or higher after this many tokens. None: settings.TIME_SLICE_TOKENS; 0: off.
    time_slice_tokens = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="tokens a generation runs before it yields its slot to a waiting one (empty: the default)",
    )
    price_prompt_per_1k = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="price per 1,000 prompt tokens (empty: no price)",
    )
    price_completion_per_1k = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="price per 1,000 completion tokens (empty: no price)",
    )

    objects = LLMModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "LLM model"

    def __str__(self) -> str:
        return self.name

    @property
    def is_router(self) -> bool:
        """A routed model: it never runs; a task submitted to it runs on one of its
        candidates (apps.catalog.routing)."""
        return self.adapter == ROUTER_ADAPTER

    def clean(self) -> None:
        if self.adapter not in registry.adapter_names and not self.is_router:
            raise ValidationError(
                {"adapter": f"unknown adapter; registered: {', '.join(registry.adapter_names) or 'none'}"}
            )
        if not isinstance(self.adapter_config, dict):
            raise ValidationError({"adapter_config": "must be a JSON object"})
        if self.is_router:  # its candidates' existence is checked by apps.catalog.services
            try:
                parse_config(self.adapter_config)
            except RouterConfigError as exc:
                raise ValidationError({"adapter_config": f"{exc.param}: {exc}"}) from None
        if self.current_version is not None and self.current_version.model_id != self.pk:
            raise ValidationError({"current_version": "must be one of this model's versions"})


class ModelVersion(models.Model):
    """One version of a model: its artifact, config overrides and resource needs.

    Written by apps.catalog.services (and the admin). The placement fields are
    written by the placement run (apps.scheduler.placer.apply_placement).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=64, validators=[version_label_validator])
    # A local path or a file:// URI (apps.catalog.artifacts): the workers must see
    # it there. Blank: the version has no artifact (e.g. a remote model).
    artifact_uri = models.CharField(max_length=1000, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, validators=[
        RegexValidator(r"^[0-9a-f]{64}$", "64 lower-case hex digits")
    ])
    size_bytes = models.BigIntegerField(null=True, blank=True)
    # Merged over the model's adapter_config; "path" defaults to the artifact's path.
    adapter_config = models.JSONField(default=dict, blank=True, help_text="overrides of the model's adapter_config")
    # What it needs to run. Left empty, they are asked of the adapter when the version is saved.
    device = models.CharField(max_length=8, choices=Device.choices, blank=True)
    gpu_memory_bytes = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The last placement run's verdict: why no worker can host it ("" = hosted or not needed).
    placement_error = models.TextField(blank=True, default="", editable=False)
    placement_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Since when the runs have found no host for it without a break (None: hosted or not
    # needed): its queued tasks fail after UNPLACEABLE_TIMEOUT_SECONDS of it.
    unplaceable_since = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["model__name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="unique_model_version")]

    def __str__(self) -> str:
        return self.spec

    @property
    def spec(self) -> str:
        """How a task names it: "name@version"."""
        return f"{self.model.name}@{self.version}"

    @property
    def is_current(self) -> bool:
        return self.model.current_version_id == self.pk

    def clean(self) -> None:
        if not isinstance(self.adapter_config, dict):
            raise ValidationError({"adapter_config": "must be a JSON object"})
        if self.gpu_memory_bytes is not None and self.gpu_memory_bytes < 0:
            raise ValidationError({"gpu_memory_bytes": "must be >= 0"})
        if self.model_id is None:
            return  # the form reports the missing model
        try:
            complete_resource_needs(self)
        except VersionError as exc:
            raise ValidationError({exc.field or "device": str(exc)}) from exc
