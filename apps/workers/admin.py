"""Workers in the admin: the fleet at a glance, and drain/undrain.

Rows are written only by apps.workers.services (the worker processes and the
drain actions below), so the admin neither adds, edits nor deletes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.errors import DomainError
from apps.workers import services
from apps.workers.models import Worker, in_live_views

if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices  # (the stubs' name for a choice's dict)

GIB = 1024**3


class PresenceFilter(admin.SimpleListFilter):
    """Live workers by default; those lost or stopped for longer than
    LOST_WORKER_RETENTION_SECONDS only when asked for (history)."""

    title = "presence"
    parameter_name = "presence"
    HISTORY = "history"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(self.HISTORY, "all, with those long lost or stopped")]

    def choices(self, changelist: Any) -> Iterator[_ListFilterChoices]:
        # No filter means "live" here, not "all": the default view leaves the long-gone out.
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": f"live (heard from in the last {settings.LOST_WORKER_RETENTION_SECONDS:g} s)",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> QuerySet[Worker]:
        return queryset if self.value() == self.HISTORY else queryset.filter(in_live_views())


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "lost", "slots", "in_flight", "last_heartbeat_at", "gpus", "host", "pid"]
    list_filter = [PresenceFilter, "state", "models"]
    search_fields = ["name", "host"]
    actions = ["drain_workers", "undrain_workers"]
    fields = readonly_fields = (
        "id", "name", "status", "host", "pid", "slots", "in_flight", "served_models", "placed_versions",
        "serves_all_models",
        "gpus", "cpu_count", "ram", "started_at", "last_heartbeat_at", "stopped_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        return super().get_queryset(request).prefetch_related("models", "version_placements__version__model")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a worker registers itself when it starts

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        # The change permission gates the drain actions on the list; a worker's
        # own page is read-only, as saving it would write over its heartbeats.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False  # a running worker would lose its row under it

    @admin.display(description="lost", boolean=True)
    def lost(self, obj: Worker) -> bool:
        return obj.is_lost

    @admin.display(description="models")
    def served_models(self, obj: Worker) -> str:
        return ", ".join(model.name for model in obj.models.all()) or "-"

    @admin.display(description="versions placed (by the placement run)")
    def placed_versions(self, obj: Worker) -> str:
        placed = []
        for row in obj.version_placements.all():
            where = f"GPU {row.gpu_index}, {row.gpu_memory_bytes / GIB:.1f} GiB" if row.gpu_index is not None else "CPU"
            placed.append(f"{row.version.spec} ({where})")
        return ", ".join(sorted(placed)) or "-"

    @admin.display(description="GPUs")
    def gpus(self, obj: Worker) -> str:
        described = []
        for gpu in obj.device_info.get("gpus") or []:
            memory = ""
            if gpu.get("memory_total") is not None and gpu.get("memory_free") is not None:
                memory = f", {gpu['memory_free'] / GIB:.1f}/{gpu['memory_total'] / GIB:.1f} GiB free"
            load = f", {gpu['utilization']}% busy" if gpu.get("utilization") is not None else ""
            described.append(f"#{gpu.get('index')} {gpu.get('name') or '?'}{memory}{load}")
        return "; ".join(described) or "none"

    @admin.display(description="CPUs")
    def cpu_count(self, obj: Worker):
        return obj.device_info.get("cpu_count")

    @admin.display(description="RAM available / total")
    def ram(self, obj: Worker) -> str:
        total, available = obj.device_info.get("ram_total"), obj.device_info.get("ram_available")
        if total is None or available is None:
            return "-"
        return f"{available / GIB:.1f} / {total / GIB:.1f} GiB"

    @admin.action(description="Drain: take no new tasks (finish those running)", permissions=["change"])
    def drain_workers(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        self._apply(request, queryset, services.drain, "drain requested for")

    @admin.action(description="Undrain: take tasks again", permissions=["change"])
    def undrain_workers(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        self._apply(request, queryset, services.undrain, "undrained")

    def _apply(self, request: HttpRequest, queryset: QuerySet[Worker], change, done: str) -> None:
        changed = []
        for worker in queryset:
            try:
                changed.append(change(worker).name)
            except DomainError as refusal:  # e.g. a stopped worker
                messages.warning(request, refusal.message)
        if changed:
            messages.success(request, f"{done.capitalize()}: {', '.join(changed)}.")
