from django.contrib import admin

from apps.catalog.models import LLMModel
from apps.scheduler.estimates import queue_stats


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = ["name", "adapter", "enabled", "is_public", "queue"]
    list_filter = ["adapter", "enabled", "is_public"]
    search_fields = ["name", "description"]
    filter_horizontal = ["allowed_tenants"]

    @admin.display(description="queue: queued / running / slots / est. wait of a new task")
    def queue(self, obj: LLMModel) -> str:
        stats = queue_stats(obj)
        wait = stats.start_after(stats.queued + 1)
        shown_wait = "unknown" if wait is None else f"{wait:.1f} s"
        return f"{stats.queued} / {stats.running} / {stats.slots} / {shown_wait}"
