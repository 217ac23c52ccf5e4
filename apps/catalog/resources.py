"""A model version's resource needs (device, GPU memory), as its adapter reports
them or the operator gives them. Below the models (ModelVersion.clean uses it)
and the services; it names no model class, only their fields."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.catalog.adapters import ResourceNeeds
from apps.catalog.artifacts import ArtifactError, artifact_path
from apps.catalog.devices import Device
from apps.catalog.plugins import registry
from apps.core.errors import InvalidInput

if TYPE_CHECKING:
    from apps.catalog.models import LLMModel, ModelVersion


class VersionError(InvalidInput):
    """A version cannot be created as asked; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, param=field)
        self.field = field


def effective_adapter_config(model: LLMModel, version: ModelVersion | None) -> dict[str, Any]:
    """The config an adapter gets: the model's, the version's artifact path as "path",
    then the version's own overrides (which may set "path", or any other key, themselves)."""
    config = dict(model.adapter_config)
    if version is None:
        return config
    if version.artifact_uri:
        config["path"] = str(artifact_path(version.artifact_uri))
    config.update(version.adapter_config)
    return config


def complete_resource_needs(version: ModelVersion) -> None:
    """Fill in the version's device and GPU memory from its adapter where not given.

    The adapter is created (never loaded) with the version's config, so an
    adapter that measures its weights needs the artifact reachable here;
    where it is not, give the needs explicitly.
    """
    if version.artifact_uri:
        try:
            artifact_path(version.artifact_uri)
        except ArtifactError as exc:
            raise VersionError(str(exc), "artifact_uri") from exc
    if version.device and (version.gpu_memory_bytes is not None or version.device == Device.CPU):
        _check_needs(version)
        return
    needs = adapter_resource_needs(version.model, version)
    if version.device == Device.GPU and needs.device != Device.GPU:
        raise VersionError("the adapter reports no GPU need on this host; give the GPU memory explicitly",
                           "gpu_memory_bytes")
    version.device = version.device or needs.device
    if version.gpu_memory_bytes is None:
        version.gpu_memory_bytes = needs.gpu_memory_bytes if version.device == Device.GPU else 0
    _check_needs(version)


def _check_needs(version: ModelVersion) -> None:
    if version.device == Device.CPU and version.gpu_memory_bytes:
        raise VersionError("a CPU version needs no GPU memory", "gpu_memory_bytes")
    if version.gpu_memory_bytes is None:
        version.gpu_memory_bytes = 0


def adapter_resource_needs(model: LLMModel, version: ModelVersion | None) -> ResourceNeeds:
    try:
        adapter = registry.create_adapter(model.adapter, effective_adapter_config(model, version))
        needs = adapter.resources()
    except Exception as exc:  # whatever the plugin raises, the operator needs the reason, not a 500
        raise VersionError(
            f"the {model.adapter!r} adapter cannot tell what this version needs ({exc}); "
            "give the device and GPU memory explicitly",
            "device",
        ) from exc
    if needs.device not in Device.values:
        raise VersionError(f"the {model.adapter!r} adapter reported an unknown device {needs.device!r}", "device")
    return needs
