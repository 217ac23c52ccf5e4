"""Webhooks in the admin: tenants' callback URLs and signing secrets, and every
delivery with its attempts (filters: tenant, status, event type; action: retry).

Nothing here decrypts tenant data: a delivery shows the host it goes to, never
its URL's path or its body. A secret appears once, when an operator replaces
it (to hand to the tenant); tenants' key managers can replace it themselves
(POST /api/v1/webhooks/secret).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.errors import InvalidInput
from apps.webhooks import sender, services
from apps.webhooks.models import Delivery, DeliveryAttempt, TenantWebhook


class TenantWebhookForm(forms.ModelForm):
    url = forms.URLField(required=False, max_length=2000, assume_scheme="https")

    class Meta:
        model = TenantWebhook
        fields = ["tenant", "url"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if url:
            try:
                sender.check_url(url, "url")  # as the tenant's API refuses it
            except InvalidInput as exc:
                raise ValidationError(exc.message) from None
        return url


@admin.register(TenantWebhook)
class TenantWebhookAdmin(admin.ModelAdmin):
    form = TenantWebhookForm
    list_display = ["tenant", "url", "secret_created_at"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__slug", "tenant__name"]
    list_filter = ["secret_created_at"]
    readonly_fields = ["secret_created_at"]
    actions = ["rotate_secrets"]

    def get_readonly_fields(self, request: HttpRequest, obj: TenantWebhook | None = None) -> list[str]:
        return [*self.readonly_fields, "tenant"] if obj is not None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: TenantWebhook, form: Any, change: bool) -> None:
        services.set_url(obj.tenant, obj.url)  # checked above; made with its secret if new

    @admin.action(description="Replace the signing secret (shown once)", permissions=["change"])
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[TenantWebhook]) -> None:
        for row in queryset.select_related("tenant"):
            secret = services.rotate_secret(row.tenant)
            messages.success(request, f"{row.tenant.slug}: new webhook secret {secret} (shown only now)")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ("number", "started_at", "duration_ms", "status_code", "error")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id", "tenant", "event_type", "status", "attempts", "last_status_code", "target", "created_at",
        "next_attempt_at", "delivered_at",
    ]
    list_filter = ["status", "event_type", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["id", "task__id", "tenant__slug", "target"]
    date_hierarchy = "created_at"
    exclude = ["payload_ciphertext"]
    readonly_fields = [
        "id", "tenant", "task", "event_type", "status", "target", "attempts", "give_up_after", "next_attempt_at",
        "last_status_code", "last_error", "created_at", "delivered_at",
    ]
    inlines = [DeliveryAttemptInline]
    actions = ["retry_deliveries"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries are written when tasks end

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Gates the retry action on the list; a delivery's own page stays read-only.
        return obj is None and super().has_change_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).defer("payload_ciphertext")

    @admin.action(description="Retry: send again now, with a fresh round of attempts", permissions=["change"])
    def retry_deliveries(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        retried = services.retry(queryset)
        skipped = queryset.count() - retried
        messages.success(request, f"{retried} deliveries will be sent again.")
        if skipped:
            messages.warning(request, f"{skipped} of an erased task have nothing left to send.")
