from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypedDict

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from guardian.admin import GuardedModelAdmin

from apps.tenants import admin_audit, hooks
from apps.tenants.data_keys import delete_tenant
from apps.tenants.models import ApiKey, AuditEvent, BudgetLedger, Membership, Plan, Tenant
from apps.tenants.services import (
    TenantError,
    checked_scopes,
    default_plan,
    issue_api_key,
    pause_tenant,
    resume_tenant,
    revoke_api_key,
)

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
    actions = ["pause_tenants", "resume_tenants"]

    def get_changeform_initial_data(self, request):
        # A tenant added here starts on the default plan, like one from create_tenant.
        return {"plan": default_plan().pk, **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change) -> None:
        before = Tenant.objects.select_related("plan").get(pk=obj.pk) if change else None
        super().save_model(request, obj, form, change)
        admin_audit.tenant_saved(before, obj)  # pausing, resuming, a plan change, …
        if before is not None and obj.active and not before.active:
            hooks.fire_resumed_after_commit()  # its queued tasks may start (as resume_tenant does)

    # An action without permissions is offered to whoever may view the list.
    @admin.action(description="Pause: refuse new submissions, hold queued tasks", permissions=["change"])
    def pause_tenants(self, request, queryset) -> None:
        self._set_active(request, queryset, pause_tenant, "Paused", "already paused")

    @admin.action(description="Resume: accept submissions, run queued tasks", permissions=["change"])
    def resume_tenants(self, request, queryset) -> None:
        self._set_active(request, queryset, resume_tenant, "Resumed", "not paused")

    def _set_active(self, request, queryset, change, done: str, unchanged: str) -> None:
        changed = [tenant.slug for tenant in queryset if change(tenant)]
        if changed:
            messages.success(request, f"{done}: {', '.join(changed)}.")
        if len(changed) < len(queryset):
            messages.info(request, f"{len(queryset) - len(changed)} tenant(s) {unchanged}: left as they were.")

    def save_formset(self, request, form, formset, change) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        saved = [f.instance.pk for f in formset.initial_forms]
        before = {m.pk: m for m in Membership.objects.select_related("user", "tenant").filter(pk__in=saved)}
        removed = [before[f.instance.pk] for f in formset.deleted_forms if f.instance.pk in before]
        super().save_formset(request, form, formset, change)
        for membership in formset.new_objects:
            admin_audit.membership_saved(None, membership)
        for membership, _ in formset.changed_objects:
            admin_audit.membership_saved(before[membership.pk], membership)
        for membership in removed:
            admin_audit.membership_removed(membership)

    # Deleting a tenant crypto-shreds it (apps.tenants.data_keys.delete_tenant, which
    # records the audit event): its keys are destroyed and committed first, then its
    # rows go, the tasks and workflows that protect it from a plain delete included.

    def delete_view(self, request, object_id, extra_context=None):
        # The stock view runs in one transaction, in which delete_tenant's key
        # destruction could not commit on its own.
        return self._delete_view(request, object_id, extra_context)  # type: ignore[attr-defined]

    def get_deleted_objects(self, objs, request):
        # The permission to delete the tenant is the one asked for: its ledgers,
        # charges and tasks are read-only here because only services write them,
        # and the one that deletes the tenant deletes them (the tasks and
        # workflows that protect it from a plain delete included).
        deleted, counts, _perms_needed, _protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), []

    def delete_model(self, request, obj: Tenant) -> None:
        delete_tenant(obj)

    def delete_queryset(self, request, queryset) -> None:
        for tenant in queryset:
            delete_tenant(tenant)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "tenant__slug"]
    autocomplete_fields = ["user", "tenant"]

    def save_model(self, request, obj, form, change) -> None:
        before = Membership.objects.select_related("user", "tenant").get(pk=obj.pk) if change else None
        super().save_model(request, obj, form, change)
        admin_audit.membership_saved(before, obj)

    # Each membership deleted (one, or a selection) leaves an audit event, in the
    # deletion's transaction, written while the row is still whole.

    def delete_model(self, request, obj: Membership) -> None:
        with transaction.atomic():
            admin_audit.membership_removed(obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            for membership in queryset.select_related("user", "tenant"):
                admin_audit.membership_removed(membership)
            super().delete_queryset(request, queryset)


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["tenant", "name", "scopes", "expires_at"]

    def clean_scopes(self):
        # The rule issue_api_key applies, checked here so that a wrong scope is a
        # form error on the field, not an exception in save_model.
        scopes = self.cleaned_data.get("scopes")
        if not scopes:
            return scopes  # none chosen: every scope (issue_api_key)
        try:
            return checked_scopes(scopes)
        except TenantError as exc:
            raise forms.ValidationError(exc.message) from None


class KeyStatusFilter(admin.SimpleListFilter):
    """Keys by whether they still authenticate: live, revoked, or expired (not revoked)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("live", "live"), ("revoked", "revoked"), ("expired", "expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        not_revoked = queryset.filter(revoked_at__isnull=True)
        if self.value() == "live":
            return not_revoked.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return not_revoked.filter(expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Shows the lookup prefix only: the secret is never stored, its hash never shown."""

    form = ApiKeyForm
    list_display = ["prefix", "tenant", "name", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = [KeyStatusFilter, "tenant"]
    search_fields = ["prefix", "name", "tenant__slug"]
    fields = ["tenant", "name", "scopes", "expires_at", "prefix", "created_at", "revoked_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "revoked_at", "last_used_at"]
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request, obj=None):
        # A key's tenant and scopes are fixed once issued; revoke and issue anew instead.
        return self.readonly_fields + (["tenant", "scopes"] if obj else [])

    def save_model(self, request, obj, form, change):
        if change:
            before = ApiKey.objects.get(pk=obj.pk)
            super().save_model(request, obj, form, change)
            admin_audit.key_changed(before, obj)
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

    # An action without permissions is offered to whoever may view the list.
    @admin.action(description="Revoke the selected keys", permissions=["change"])
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

    def save_model(self, request, obj, form, change) -> None:
        before = Plan.objects.get(pk=obj.pk) if change else None
        super().save_model(request, obj, form, change)
        if before is not None:
            admin_audit.plan_saved(before, obj)

    @admin.display(description="tenants", ordering="tenant_count")
    def tenant_count(self, plan: WithAnnotations[Plan, _TenantCount]) -> int:  # see get_queryset
        return plan.tenant_count


@admin.register(BudgetLedger)
class BudgetLedgerAdmin(admin.ModelAdmin):
    """Usage per tenant and budget period. Read-only: only admission and settlement write it."""

    list_display = ["tenant", "period", "period_start", "spent_tokens", "reserved_tokens"]
    list_filter = ["period", "tenant"]
    date_hierarchy = "period_start"
    search_fields = ["tenant__slug"]
    list_select_related = ["tenant"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# Columns of the CSV export, in order: (header, how to read it from an event).
AUDIT_CSV_COLUMNS = (
    ("time", lambda event: event.time.isoformat()),
    ("action", lambda event: event.action),
    ("actor_kind", lambda event: event.actor_kind),
    ("actor", lambda event: event.actor_name),
    ("actor_user_id", lambda event: event.actor_user_id),
    ("tenant", lambda event: event.tenant_slug),
    ("tenant_id", lambda event: event.tenant_id),
    ("source_address", lambda event: event.source_address),
    ("target", lambda event: event.target),
    ("changes", lambda event: json.dumps(event.changes, sort_keys=True)),
)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit log: read-only here as everywhere (apps.tenants.models.AuditEvent).
    "Export as CSV" on the list downloads the rows its filters and search select."""

    list_display = ["time", "action", "actor", "tenant_slug", "target", "source_address"]
    list_filter = ["action", "actor_kind", "tenant_slug"]
    date_hierarchy = "time"
    search_fields = ["actor_name", "target"]
    show_full_result_count = False  # the log only grows: no second COUNT(*) per page

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="actor", ordering="actor_name")
    def actor(self, event: AuditEvent) -> str:
        return event.actor

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_csv)
        return [path("export.csv", export, name="tenants_auditevent_export"), *super().get_urls()]

    def export_csv(self, request) -> StreamingHttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        # The changelist's own filtering, from the same query string: what the list shows, unpaginated.
        events = self.get_changelist_instance(request).queryset
        response = StreamingHttpResponse(_csv_lines(events.iterator()), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        return response


class _Line:
    """csv.writer's file: hands back each line instead of keeping it."""

    def write(self, line: str) -> str:
        return line


def _csv_lines(events: Iterator[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow([header for header, _ in AUDIT_CSV_COLUMNS])
    for event in events:
        yield writer.writerow([_cell(read(event)) for _, read in AUDIT_CSV_COLUMNS])


def _cell(value: Any) -> Any:
    # A spreadsheet runs a cell that starts like a formula; a username tried at
    # the login form is anyone's text.
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value
