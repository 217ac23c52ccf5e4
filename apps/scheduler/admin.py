"""What the admin shows that only the scheduler can compute.

The model list, with each model's queue: tasks queued and running, the slots
of the workers serving it, and the estimated wait of a task submitted now
(apps.scheduler.estimates). A tenant's usage report for a period, by day and
model, on a page linked from the tenant's own, and as CSV
(apps.scheduler.usage, as the tenant's GET /api/v1/usage/report).

The catalog and the tenants app (below the scheduler) register those admins;
this app extends them and registers them again.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from apps.catalog.admin import LLMModelAdmin
from apps.catalog.models import LLMModel
from apps.core.errors import InvalidInput
from apps.scheduler import usage
from apps.scheduler.estimates import QueueStats, queue_stats
from apps.tenants.admin import TenantAdmin
from apps.tenants.models import Tenant

# What the usage report asks of an operator, beside seeing the tenant: usage is
# the budget ledger's (as on the operator API's GET /api/v1/ops/tenants/{slug}/usage).
USAGE_PERMISSION = "tenants.view_budgetledger"

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


class UsageReportForm(forms.Form):
    since = forms.DateField(required=False, help_text="first day (UTC); empty: 29 days before the last")
    until = forms.DateField(required=False, help_text="last day (UTC), included; empty: today")

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.errors:
            return cleaned
        try:
            cleaned["period"] = usage.usage_period(cleaned.get("since"), cleaned.get("until"))
        except InvalidInput as refusal:  # the same rules as the API's
            self.add_error(refusal.param, refusal.message)
        return cleaned


class TenantUsageAdmin(TenantAdmin):
    """The tenant admin, with its usage report (a link on the tenant's page)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Guardian's change form with the report's link (an instance attribute, as guardian declares it).
        self.change_form_template = "admin/tenants/tenant/change_form.html"

    def get_urls(self):
        report = self.admin_site.admin_view(self.usage_report_view)
        return [path("<path:object_id>/usage/", report, name="tenants_tenant_usage"), *super().get_urls()]

    def may_see_usage(self, request: HttpRequest, tenant: Tenant | None = None) -> bool:
        return self.has_view_permission(request, tenant) and request.user.has_perm(USAGE_PERMISSION)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["show_usage_report"] = obj is not None and self.may_see_usage(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def usage_report_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        tenant = self.get_object(request, object_id)
        if tenant is None:
            raise Http404("no such tenant")
        if not self.may_see_usage(request, tenant):
            raise PermissionDenied
        form = UsageReportForm(request.GET or {})
        period = form.cleaned_data["period"] if form.is_valid() else None
        rows = usage.usage_by_day(tenant, period) if period is not None else []
        if period is not None and request.GET.get("download") == "csv":
            response = HttpResponse(usage.usage_csv(rows), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{usage.usage_csv_filename(tenant, period)}"'
            return response
        return TemplateResponse(request, "admin/tenants/tenant/usage_report.html", {
            **self.admin_site.each_context(request),
            "title": f"Usage of {tenant.slug}",
            "opts": self.model._meta,
            "original": tenant,
            "form": form,
            "period": period,
            "rows": rows,
            "totals": usage.usage_totals(rows),
        })


admin.site.unregister(Tenant)
admin.site.register(Tenant, TenantUsageAdmin)
