from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin, messages
from django.db.models import Count
from guardian.admin import GuardedModelAdmin

from apps.tenants.models import ApiKey, BudgetLedger, Membership, Plan, Tenant
from apps.tenants.services import default_plan, issue_api_key, revoke_api_key

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations  # installed with the stubs, for type checking only


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(GuardedModelAdmin):
    # Guarded: operators can be given rights on single tenants (object permissions).
    list_display = ["slug", "name", "plan", "active", "created_at"]
    list_filter = ["active", "plan"]
    list_select_related = ["plan"]
    search_fields = ["slug", "name"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]

    def get_changeform_initial_data(self, request):
        # A tenant added here starts on the default plan, like one from create_tenant.
        return {"plan": default_plan().pk, **super().get_changeform_initial_data(request)}


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "tenant__slug"]
    autocomplete_fields = ["user", "tenant"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Shows the lookup prefix only: the secret is never stored, its hash never shown."""

    list_display = ["prefix", "tenant", "name", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["tenant"]
    search_fields = ["prefix", "name", "tenant__slug"]
    fields = ["tenant", "name", "scopes", "expires_at", "prefix", "created_at", "revoked_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "revoked_at", "last_used_at"]
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request, obj=None):
        # A key's tenant and scopes are fixed once issued; revoke and issue anew instead.
        return self.readonly_fields + (["tenant", "scopes"] if obj else [])

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = issue_api_key(
            form.cleaned_data["tenant"],
            name=form.cleaned_data.get("name", ""),
            scopes=form.cleaned_data.get("scopes") or None,
            expires_at=form.cleaned_data.get("expires_at"),
        )
        obj.pk = issued.api_key.pk
        obj.refresh_from_db()
        messages.warning(request, f"New API key (shown only this once): {issued.secret}")

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request, queryset):
        for api_key in queryset:
            revoke_api_key(api_key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")


class _TenantCount(TypedDict):
    tenant_count: int


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    """Editing a plan changes it for every tenant on it (the list shows how many)."""

    list_display = [
        "name", "rpm", "tpm", "budget_tokens", "budget_period", "max_running", "max_queued", "weight",
        "max_priority", "tenant_count",
    ]
    list_filter = ["budget_period", "max_priority"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(tenant_count=Count("tenants"))

    @admin.display(description="tenants", ordering="tenant_count")
    def tenant_count(self, plan: WithAnnotations[Plan, _TenantCount]) -> int:  # see get_queryset
        return plan.tenant_count


@admin.register(BudgetLedger)
class BudgetLedgerAdmin(admin.ModelAdmin):
    """Usage per tenant and budget period. Read-only: only admission and settlement write it."""

    list_display = ["tenant", "period", "period_start", "spent_tokens", "reserved_tokens"]
    list_filter = ["period"]
    search_fields = ["tenant__slug"]
    list_select_related = ["tenant"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
