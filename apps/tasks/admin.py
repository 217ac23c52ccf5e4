"""Tasks in the admin: accounting and state only. Nothing here decrypts tenant data:
the list does not even read the ciphertexts, and a task's page shows only their sizes.

Cancelling is the one change an operator makes (the list's action, through
apps.tasks.services.cancel_task, as a tenant's cancel goes); it needs the
change permission on tasks.
"""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.tasks.models import DEAD_LETTER_CODES, TERMINAL_STATES, Task, TaskState
from apps.tasks.services import cancel_task

CIPHERTEXTS = ("input_ciphertext", "meta_ciphertext", "output_ciphertext", "progress_ciphertext")


class DeadLetterFilter(admin.SimpleListFilter):
    """Tasks that failed after using up their attempts (TASK_MAX_ATTEMPTS): poison
    tasks, each of whose attempts failed or lost its worker."""

    title = "dead letters"
    parameter_name = "dead_letter"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "failed after the last attempt")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        if self.value() == "yes":
            return queryset.filter(state=TaskState.FAILED, error_code__in=DEAD_LETTER_CODES)
        return queryset


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "id", "tenant", "model", "state", "priority", "attempt", "preemptions", "slices", "total_tokens",
        "created_at", "finished_at",
    ]
    list_filter = ["state", DeadLetterFilter, "priority", "model", "tenant", "error_code"]
    list_select_related = ["tenant", "model"]
    # The id (or its start), the tenant's slug, the model's name, the worker's name;
    # never what the tenant wrote (encrypted; only the tenant's key reads it).
    search_fields = ["id", "tenant__slug", "model__name", "worker_name"]
    date_hierarchy = "created_at"
    exclude = [*CIPHERTEXTS, "client_ref_digest"]
    actions = ["cancel_tasks"]
    readonly_fields = [
        "id", "tenant", "api_key", "model", "state", "priority", "max_tokens", "temperature", "top_p", "seed",
        "prompt_tokens", "completion_tokens", "error_code", "error_message", "attempt", "worker_name",
        "lease_expires_at", "cancel_requested", "created_at", "queued_at", "dispatched_at", "started_at",
        "finished_at", "erased_at", "workflow", "critical_path_rank", "suspend_requested", "progress_tokens",
        "preemptions", "slices", "turn_at", "encrypted_sizes",
    ]

    def has_add_permission(self, request):
        return False  # tasks come through the API, which admits and encrypts them

    def has_change_permission(self, request, obj=None):
        # The change permission gates the cancel action on the list; a task's own
        # page stays read-only: its state changes belong to the scheduler and workers.
        return obj is None and super().has_change_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        # Rows without their ciphertexts (a task's page reads them for their sizes only).
        return super().get_queryset(request).defer(*CIPHERTEXTS)

    @admin.action(description="Cancel: drop queued tasks, stop running ones", permissions=["change"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        outcome: dict[str, list[str]] = {"cancelled": [], "asked to stop": [], "already finished": []}
        for task in queryset:
            if task.state in TERMINAL_STATES:
                outcome["already finished"].append(str(task.pk))
                continue
            task = cancel_task(task)
            # A running task stops at its worker's next check; it then ends cancelled.
            done = "cancelled" if task.state == TaskState.CANCELLED else "asked to stop"
            outcome[done].append(str(task.pk))
        for what, ids in outcome.items():
            if ids:
                level = messages.SUCCESS if what != "already finished" else messages.INFO
                messages.add_message(request, level, f"{what.capitalize()}: {', '.join(ids)}.")

    @admin.display(description="total tokens")
    def total_tokens(self, obj: Task):
        usage = obj.usage
        return usage["total_tokens"] if usage else None

    @admin.display(description="encrypted payload sizes (bytes)")
    def encrypted_sizes(self, obj: Task) -> str:
        sizes = {
            "input": obj.input_ciphertext,
            "metadata": obj.meta_ciphertext,
            "output": obj.output_ciphertext,
        }
        return ", ".join(f"{k}: {len(v) if v is not None else '-'}" for k, v in sizes.items())
