"""The model list in the admin, with each model's queue: tasks queued and
running, the slots of the workers serving it, and the estimated wait of a task
submitted now (apps.scheduler.estimates).

The catalog (below the scheduler) registers the model admin; this app
extends it with the columns only it can compute, and registers it again.
"""

from __future__ import annotations

from django.contrib import admin

from apps.catalog.admin import LLMModelAdmin
from apps.catalog.models import LLMModel
from apps.scheduler.estimates import QueueStats, queue_stats

# Not a field of LLMModel: the admin keeps each listed row's stats on its instance.
_STATS_ATTRIBUTE = "_admin_queue_stats"


class QueuedModelAdmin(LLMModelAdmin):
    list_display = [
        "name", "adapter", "current_version", "placement", "queued", "running", "slots", "estimated_wait",
        "enabled", "is_public", "created_at",
    ]

    # The queue columns: one queue_stats per row (a few queries), shared by its four cells.
    def _queue(self, obj: LLMModel) -> QueueStats:
        stats: QueueStats | None = getattr(obj, _STATS_ATTRIBUTE, None)
        if stats is None:
            stats = queue_stats(obj)
            setattr(obj, _STATS_ATTRIBUTE, stats)  # on the row's instance: it lives as long as the page
        return stats

    @admin.display(description="queued")
    def queued(self, obj: LLMModel) -> int:
        return self._queue(obj).queued

    @admin.display(description="running")
    def running(self, obj: LLMModel) -> int:
        return self._queue(obj).running

    @admin.display(description="slots")
    def slots(self, obj: LLMModel) -> int:
        return self._queue(obj).slots

    @admin.display(description="est. wait of a new task")
    def estimated_wait(self, obj: LLMModel) -> str:
        stats = self._queue(obj)
        wait = stats.start_after(stats.queued + 1)
        return "unknown" if wait is None else f"{wait:.1f} s"


admin.site.unregister(LLMModel)
admin.site.register(LLMModel, QueuedModelAdmin)
