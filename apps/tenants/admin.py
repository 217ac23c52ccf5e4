from django.contrib import admin, messages
from guardian.admin import GuardedModelAdmin

from apps.tenants.models import ApiKey, Membership, Tenant
from apps.tenants.services import issue_api_key, revoke_api_key


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(GuardedModelAdmin):
    # Guarded: operators can be given rights on single tenants (object permissions).
    list_display = ["slug", "name", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["slug", "name"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]


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
