"""Tasks in the admin: accounting and state only. Nothing here decrypts tenant data."""

from django.contrib import admin

from apps.tasks.models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "id", "tenant", "model", "state", "priority", "attempt", "total_tokens", "created_at", "finished_at"
    ]
    list_filter = ["state", "priority", "model", "tenant"]
    list_select_related = ["tenant", "model"]
    search_fields = ["id"]
    date_hierarchy = "created_at"
    exclude = ["input_ciphertext", "meta_ciphertext", "output_ciphertext", "client_ref_digest"]
    readonly_fields = [
        "id", "tenant", "api_key", "model", "state", "priority", "max_tokens", "temperature", "top_p", "seed",
        "prompt_tokens", "completion_tokens", "error_code", "error_message", "attempt", "worker_name",
        "lease_expires_at", "cancel_requested", "created_at", "queued_at", "dispatched_at", "started_at",
        "finished_at", "erased_at", "workflow", "critical_path_rank", "encrypted_sizes",
    ]

    def has_add_permission(self, request):
        return False  # tasks come through the API, which admits and encrypts them

    def has_change_permission(self, request, obj=None):
        return False  # state changes belong to the scheduler and workers

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
