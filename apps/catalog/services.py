"""Looking models up for a tenant, model versions and the alias, and the adapters that serve them."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.catalog import hooks, statements
from apps.catalog.artifacts import ArtifactError, artifact_path, digest
from apps.catalog.models import LLMModel, ModelVersion
from apps.catalog.plugins import registry
from apps.catalog.resources import VersionError, effective_adapter_config
from apps.catalog.routing import ROUTER_ADAPTER, RouterConfigError, parse_config
from apps.catalog.tiny_model import build_tiny_model
from apps.core.errors import Conflict, InvalidInput, Unavailable
from apps.tenants import audit
from apps.tenants.models import AuditAction, Tenant

logger = logging.getLogger(__name__)

# Placement runs every minute (apps.scheduler.jobs); a refused submission may retry after that.
UNPLACEABLE_RETRY_AFTER_SECONDS = 60


def resolve_model_for_tenant(tenant: Tenant, name: str) -> LLMModel | None:
    """The enabled model named ``name`` that ``tenant`` may use, else None.

    Unknown, disabled and not-granted models are indistinguishable to the
    caller, so a tenant cannot learn which private models exist.
    """
    found = statements.visible_model(tenant, name)  # visible_to's rule, through a cursor (every submission)
    return None if found is None else found[0]


def candidates_for_tenant(tenant: Tenant, names: Collection[str]) -> dict[str, LLMModel]:
    """Those of ``names`` that ``tenant`` may use (enabled, public or granted), by name, with
    their current version: a routed model grants nothing on its candidates. Routers are left
    out (registration refuses them as candidates; this holds if one became a router since)."""
    models = (
        LLMModel.objects.visible_to(tenant).select_related("current_version")
        .filter(name__in=list(names)).exclude(adapter=ROUTER_ADAPTER)
    )
    return {model.name: model for model in models}


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
    # The model, its current version and the pinned one in one statement (every submission).
    found = statements.visible_model(tenant, name, label if pinned else None)
    if found is None:
        return None
    model, version = found
    if not pinned:
        return ModelTarget(model, model.current_version)
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


# --- Models (operators: manage.py add_model, POST/PATCH /api/v1/ops/models) ---------------------


class ModelError(InvalidInput):
    """A model cannot be registered or changed as asked; ``param`` names the field at fault."""


# What update_model may change; the name is the model's identity (tasks and the API name it).
MODEL_FIELDS = frozenset({
    "description", "adapter", "adapter_config", "is_public", "enabled", "tenants",
    "price_prompt_per_1k", "price_completion_per_1k", "time_slice_tokens",
})


def create_model(
    name: str,
    adapter: str,
    adapter_config: Mapping[str, Any] | None = None,
    *,
    description: str = "",
    is_public: bool = False,
    tenants: Sequence[str] = (),
    enabled: bool = True,
    price_prompt_per_1k: Decimal | None = None,
    price_completion_per_1k: Decimal | None = None,
    time_slice_tokens: int | None = None,
) -> LLMModel:
    """Register a model served by ``adapter`` with ``adapter_config``, public or granted to the
    tenants with slugs ``tenants``. The adapter is created (never loaded) to validate the config:
    its own AdapterConfigError message is the refusal. Raises ModelError, or Conflict for a
    name in use; nothing is written then. The placement runs once it is committed, and managed
    workers take it up from their next heartbeat, without a restart.

    ``adapter`` ROUTER_ADAPTER registers a routed model: ``adapter_config`` is its router
    config (apps.catalog.routing), whose candidates must be existing models, none a router.
    Prices are per thousand tokens (None: no price). ``time_slice_tokens``: None for
    the platform's default (settings.TIME_SLICE_TOKENS), 0 for no time slicing."""
    if adapter_config is not None and not isinstance(adapter_config, Mapping):  # from JSON: a list, a string
        raise ModelError("adapter_config must be a JSON object", param="adapter_config")
    config = dict(adapter_config or {})
    _check_adapter(adapter, config, name)
    model = LLMModel(
        name=name, adapter=adapter, adapter_config=config, description=description, is_public=is_public,
        enabled=enabled, price_prompt_per_1k=price_prompt_per_1k, price_completion_per_1k=price_completion_per_1k,
        time_slice_tokens=time_slice_tokens,
    )
    _check_fields(model)
    try:
        with transaction.atomic():
            if LLMModel.objects.filter(name=name).exists():
                raise _name_in_use(name)
            model.save()
            model.allowed_tenants.set(_tenants_by_slug(tenants))
            record_grant_changes(model, before={})
            catalog_changed()
    except IntegrityError:  # a concurrent registration of the same name won
        raise _name_in_use(name) from None
    logger.info("model %s registered (adapter %s)", name, adapter)
    return model


def update_model(model: LLMModel, changes: Mapping[str, Any]) -> LLMModel:
    """Apply ``changes`` (fields of MODEL_FIELDS; ``tenants``: the slugs granted, replacing
    the grants) to ``model``. A new adapter or config is validated as create_model does, with
    the current version's artifact and overrides when the model has one. Tasks already
    queued run with the config of the moment they start."""
    unknown = sorted(set(changes) - MODEL_FIELDS)
    if unknown:
        raise ModelError(f"{unknown[0]}: not a field that can be changed", param=unknown[0])
    with transaction.atomic():
        # of=self: PostgreSQL cannot lock the nullable side of the join (a model without a version).
        model = LLMModel.objects.select_for_update(of=("self",)).select_related("current_version").get(pk=model.pk)
        for field in MODEL_FIELDS - {"tenants"}:
            if field in changes:
                setattr(model, field, changes[field])
        if "adapter" in changes or "adapter_config" in changes:
            if not isinstance(model.adapter_config, dict):
                raise ModelError("adapter_config must be a JSON object", param="adapter_config")
            try:
                config = effective_adapter_config(model, model.current_version)
            except ArtifactError as exc:
                raise ModelError(str(exc), param="adapter_config") from exc
            _check_adapter(model.adapter, config, model.name)
        _check_fields(model)
        model.save()
        if "tenants" in changes:
            before = grants_of(model)
            model.allowed_tenants.set(_tenants_by_slug(changes["tenants"]))
            record_grant_changes(model, before)
        catalog_changed()
    return model


def grants_of(model: LLMModel) -> dict[Any, Tenant]:
    """The tenants ``model`` is granted to, by id (before a change, for record_grant_changes)."""
    return {tenant.pk: tenant for tenant in model.allowed_tenants.all()}


def grant_model(model: LLMModel, tenants: Sequence[Tenant]) -> list[Tenant]:
    """Open ``model`` to ``tenants`` too (its other grants stay); returns the tenants
    newly granted, each recorded in the audit log (model_granted)."""
    with transaction.atomic():
        before = grants_of(model)
        model.allowed_tenants.add(*tenants)
        record_grant_changes(model, before)
    return sorted((tenant for tenant in tenants if tenant.pk not in before), key=lambda tenant: tenant.slug)


def record_grant_changes(model: LLMModel, before: Mapping[Any, Tenant]) -> None:
    """An audit event for each tenant granted ``model`` or refused it since ``before`` (grants_of then)."""
    after = grants_of(model)
    target = f"model {model.name}"
    for tenant in sorted((after[pk] for pk in after.keys() - before.keys()), key=lambda tenant: tenant.slug):
        audit.record(AuditAction.MODEL_GRANTED, tenant=tenant, target=target)
    for tenant in sorted((before[pk] for pk in before.keys() - after.keys()), key=lambda tenant: tenant.slug):
        audit.record(AuditAction.MODEL_REVOKED, tenant=tenant, target=target)


def _check_adapter(adapter: str, config: Any, name: str) -> None:
    if not isinstance(config, dict):
        raise ModelError("adapter_config must be a JSON object", param="adapter_config")
    if adapter == ROUTER_ADAPTER:
        _check_router(name, config)
        return
    try:
        registry.create_adapter(adapter, config)
    except LookupError as exc:
        raise ModelError(str(exc), param="adapter") from exc
    except Exception as exc:  # AdapterConfigError ("key: reason"), or whatever a plugin raises: its reason
        raise ModelError(f"the {adapter!r} adapter refuses this config: {exc}", param="adapter_config") from exc


def _routers_naming(name: str) -> list[str]:
    """The routed models that list ``name`` among their candidates."""
    routers = LLMModel.objects.filter(adapter=ROUTER_ADAPTER).exclude(name=name).values_list("name", "adapter_config")
    named = []
    for router, config in routers:
        try:
            parsed = parse_config(config)
        except RouterConfigError:
            continue
        if any(candidate.model == name for candidate in parsed.candidates):
            named.append(router)
    return sorted(named)


def _check_router(name: str, config: Mapping[str, Any]) -> None:
    """A router's config: valid (routing.parse_config), its candidates existing models and
    none of them a router — a router naming a router is refused outright, which rules out
    cycles — and no router naming this one (it would become a router's candidate)."""
    try:
        parsed = parse_config(config)
    except RouterConfigError as exc:
        raise ModelError(f"{exc.param}: {exc}", param=exc.param) from None
    listed = [candidate.model for candidate in parsed.candidates]
    found = dict(LLMModel.objects.filter(name__in=listed).values_list("name", "adapter"))
    for i, candidate in enumerate(listed):
        param = f"adapter_config.candidates.{i}.model"
        if candidate == name:
            raise ModelError(f"{param}: a router cannot route to itself", param=param)
        if candidate not in found:
            raise ModelError(f"{param}: no model named {candidate!r}", param=param)
        if found[candidate] == ROUTER_ADAPTER:
            raise ModelError(f"{param}: {candidate!r} is a router; a router's candidates run models", param=param)
    naming = _routers_naming(name)
    if naming:
        raise ModelError(f"adapter: {naming[0]!r} routes to this model; a router cannot be a candidate",
                         param="adapter")


def _check_fields(model: LLMModel) -> None:
    """The model's own validators (the name's form); uniqueness is the caller's, as a Conflict."""
    try:
        model.full_clean(exclude=["current_version"], validate_unique=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        param = None if field == "__all__" else field
        raise ModelError(f"{field}: {' '.join(messages)}" if param else " ".join(messages), param=param) from None


def _tenants_by_slug(slugs: Sequence[str]) -> list[Tenant]:
    found = {tenant.slug: tenant for tenant in Tenant.objects.filter(slug__in=list(slugs))}
    missing = [slug for slug in slugs if slug not in found]
    if missing:
        raise ModelError(f"no tenant with slug {missing[0]!r}", param="tenants")
    return [found[slug] for slug in dict.fromkeys(slugs)]


def _name_in_use(name: str) -> Conflict:
    return Conflict(f"a model named {name!r} exists", code="model_exists", param="name")


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
        placement_error="", placement_checked_at=now, unplaceable_since=None
    )
    for version_id, reason in errors.items():
        ModelVersion.objects.filter(pk=version_id).update(placement_error=reason, placement_checked_at=now)
    ModelVersion.objects.filter(pk__in=list(errors), unplaceable_since__isnull=True).update(unplaceable_since=now)
    # Unjudged from now on (no check time either): a submission pinned to one asks for a verdict again.
    ModelVersion.objects.exclude(pk__in=checked).exclude(placement_error="").update(
        placement_error="", placement_checked_at=None, unplaceable_since=None
    )


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
