"""Looking models up for a tenant, model versions and the alias, and the adapters that serve them."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.catalog import hooks
from apps.catalog.artifacts import ArtifactError, artifact_path, digest
from apps.catalog.models import LLMModel, ModelVersion
from apps.catalog.resources import VersionError
from apps.catalog.tiny_model import build_tiny_model
from apps.core.errors import Unavailable
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

# Placement runs every minute (apps.scheduler.jobs); a refused submission may retry after that.
UNPLACEABLE_RETRY_AFTER_SECONDS = 60


def resolve_model_for_tenant(tenant: Tenant, name: str) -> LLMModel | None:
    """The enabled model named ``name`` that ``tenant`` may use, else None.

    Unknown, disabled and not-granted models are indistinguishable to the
    caller, so a tenant cannot learn which private models exist.
    """
    return LLMModel.objects.visible_to(tenant).select_related("current_version").filter(name=name).first()


@dataclass(frozen=True)
class ModelTarget:
    """What a task runs: the model, and the version (None for a model without a current version)."""

    model: LLMModel
    version: ModelVersion | None


def resolve_target_for_tenant(tenant: Tenant, spec: str) -> ModelTarget | None:
    """``spec`` is "name" (the current version now) or "name@version" (pinned); None when
    the model is not one the tenant may use or has no such version — the same None, so
    a tenant learns nothing about other tenants' models or their versions."""
    name, pinned, label = spec.partition("@")
    model = resolve_model_for_tenant(tenant, name)
    if model is None:
        return None
    if not pinned:
        return ModelTarget(model, model.current_version)
    version = model.versions.filter(version=label).first()
    return ModelTarget(model, version) if version is not None else None


def refuse_unplaceable(target: ModelTarget) -> None:
    """503 ``model_unplaceable`` when the last placement run found no worker for the version.

    Refused at once rather than accepted: a tenant learns now that nothing can
    run it, instead of watching a task sit in the queue. The reason (sizes of
    the fleet's GPUs) is for operators; the tenant gets the fact and Retry-After.
    """
    version = target.version
    if version is not None and version.placement_error:
        raise Unavailable(
            f"model {version.spec!r} cannot be placed on any worker now; the operators are told. Retry later.",
            code="model_unplaceable",
            param="model",
            retry_after_seconds=UNPLACEABLE_RETRY_AFTER_SECONDS,
        )


# --- Versions -----------------------------------------------------------------------------


def create_version(
    model: LLMModel,
    label: str,
    artifact_uri: str,
    *,
    sha256: str | None = None,
    adapter_config: Mapping[str, Any] | None = None,
    device: str | None = None,
    gpu_memory_bytes: int | None = None,
    make_current: bool = False,
) -> ModelVersion:
    """Measure the local artifact (sha256, size), verify ``sha256`` when given, record the version.

    Raises VersionError (nothing is written) on a missing artifact, a digest
    mismatch, a duplicate label, or needs that cannot be determined.
    """
    try:
        path = artifact_path(artifact_uri)
    except ArtifactError as exc:
        raise VersionError(str(exc), "artifact_uri") from exc
    if not path.exists():
        raise VersionError(f"{path} does not exist on this host", "artifact_uri")
    try:
        measured = digest(path)
    except ArtifactError as exc:
        raise VersionError(str(exc), "artifact_uri") from exc
    if sha256 is not None and sha256.strip().lower() != measured.sha256:
        raise VersionError(
            f"sha256 mismatch for {path}: expected {sha256.strip().lower()}, the artifact hashes to {measured.sha256}",
            "sha256",
        )
    version = ModelVersion(
        model=model,
        version=label,
        artifact_uri=artifact_uri,
        sha256=measured.sha256,
        size_bytes=measured.size_bytes,
        adapter_config=dict(adapter_config or {}),
        device=device or "",
        gpu_memory_bytes=gpu_memory_bytes,
    )
    try:
        version.full_clean()  # validators, the (model, version) uniqueness, and the needs (clean)
    except ValidationError as exc:
        raise VersionError(_describe(exc)) from exc
    with transaction.atomic():
        version.save()
        if make_current:
            make_version_current(version)
        catalog_changed()
    return version


def _describe(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
    return " ".join(error.messages)


def make_version_current(version: ModelVersion) -> LLMModel:
    """Move the model's alias to ``version``: new submissions naming the model run it.

    Tasks already submitted keep the version they were given; workers keep
    the old version while it has unfinished tasks (see docs/operations.md).
    """
    model = LLMModel.objects.get(pk=version.model_id)
    if model.current_version_id != version.pk:
        model.current_version = version
        model.save(update_fields=["current_version"])
        logger.info("model %s: current version is now %s", model.name, version.version)
        catalog_changed()
    return model


def catalog_changed() -> None:
    """Call after any write to models or versions (services here, the admin):
    the placement runs again once the change is committed."""
    hooks.fire_after_commit()


def record_placement(errors: Mapping[Any, str], checked: Collection[Any]) -> None:
    """Store a placement run's verdicts: ``errors`` by version id for the versions no
    worker can host, clear the others it ``checked``; versions it did not check (no
    longer current, no unfinished tasks) need no host and carry no error."""
    now = timezone.now()
    ModelVersion.objects.filter(pk__in=checked).exclude(pk__in=list(errors)).update(
        placement_error="", placement_checked_at=now
    )
    for version_id, reason in errors.items():
        ModelVersion.objects.filter(pk=version_id).update(placement_error=reason, placement_checked_at=now)
    ModelVersion.objects.exclude(pk__in=checked).exclude(placement_error="").update(placement_error="")


TINY_MODEL_NAME = "tiny"


def ensure_tiny_model(path) -> LLMModel:
    """Build the tiny local model once under ``path`` and serve it as the public model "tiny".

    An existing "tiny" model is left as the operator configured it.
    """

    built = build_tiny_model(path)
    model, created = LLMModel.objects.get_or_create(
        name=TINY_MODEL_NAME,
        defaults={
            "description": "A tiny Llama-architecture model with random weights and a locally trained "
            "tokenizer: real token streaming, meaningless text (by design).",
            "adapter": "transformers",
            "adapter_config": {"path": str(built)},
            "is_public": True,
            "enabled": True,
        },
    )
    if created:
        catalog_changed()
    return model
