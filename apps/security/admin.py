from django.contrib import admin, messages

from apps.security.models import OperatorToken
from apps.security.services import revoke_operator_token


@admin.register(OperatorToken)
class OperatorTokenAdmin(admin.ModelAdmin):
    """Lists and revokes operator tokens; issue them with ``manage.py create_operator_token``
    (the secret is shown once there and never stored; its hash is never shown)."""

    list_display = ["prefix", "user", "name", "created_at", "revoked_at", "last_used_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "user"]
    search_fields = ["prefix", "name", "user__username"]
    fields = readonly_fields = ("user", "name", "prefix", "created_at", "revoked_at", "last_used_at")
    actions = ["revoke_tokens"]

    def has_add_permission(self, request) -> bool:
        return False

    # An action without permissions is offered to whoever may view the list.
    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke_tokens(self, request, queryset):
        for token in queryset:
            revoke_operator_token(token)
        messages.success(request, f"Revoked {queryset.count()} token(s).")
