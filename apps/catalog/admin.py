"""Models and their versions in the admin: the alias, the artifacts, placement problems and queues.

A version that no worker can host (``placement_error``, written by the
placement run) shows in the lists and as a warning on top of them. The scheduler's
admin (apps.scheduler.admin) adds each model's queue columns to the model list.

Every save and delete here goes through ``CatalogChangesReplan``: the placement
runs again once the change is committed (apps.catalog.services.catalog_changed).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.forms import ModelChoiceField, ModelForm
from django.http import HttpRequest
from django.template.response import TemplateResponse

from apps.catalog import services
from apps.catalog.models import LLMModel, ModelVersion
from apps.tenants.models import Tenant

GIB = 1024**3

VERSION_FIELDS = (
    "version", "artifact_uri", "sha256", "size_bytes", "adapter_config", "device", "gpu_memory_bytes",
    "placement_error", "placement_checked_at", "created_at",
)
VERSION_READONLY = ["placement_error", "placement_checked_at", "created_at"]


def _warn_unplaceable(request: HttpRequest) -> None:
    for version in ModelVersion.objects.exclude(placement_error="").select_related("model"):
        messages.warning(request, f"No worker can host {version.spec}: {version.placement_error}")


class CatalogChangesReplan(admin.ModelAdmin):
    """Saves and deletes made in the admin replan placement, as the services' own do."""

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.catalog_changed()

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # the versions inline
        services.catalog_changed()

    def delete_model(self, request: HttpRequest, obj) -> None:
        super().delete_model(request, obj)
        services.catalog_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        services.catalog_changed()


class ModelVersionInline(admin.StackedInline):
    model = ModelVersion
    fk_name = "model"
    extra = 0
    fields = VERSION_FIELDS
    readonly_fields = VERSION_READONLY
    show_change_link = True


class GrantForm(forms.Form):
    """The grant action's intermediate page: which tenants the selected models open to."""

    tenants = forms.ModelMultipleChoiceField(
        queryset=Tenant.objects.order_by("slug"), widget=forms.CheckboxSelectMultiple,
        help_text="the models become usable by these tenants too; their other grants stay",
    )


@admin.register(LLMModel)
class LLMModelAdmin(CatalogChangesReplan):
    list_display = [
        "name", "adapter", "current_version", "placement", "enabled", "is_public", "time_slice_tokens", "created_at",
    ]
    list_filter = ["adapter", "enabled", "is_public"]
    search_fields = ["name", "description"]
    filter_horizontal = ["allowed_tenants"]
    inlines = [ModelVersionInline]
    actions = ["grant_to_tenants"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LLMModel]:
        return super().get_queryset(request).select_related("current_version").prefetch_related("versions")

    def get_form(
        self, request: HttpRequest, obj: LLMModel | None = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm[Any]]:
        form = super().get_form(request, obj, change, **kwargs)
        # The alias can only name one of this model's own versions (saved ones).
        field = form.base_fields.get("current_version")
        if isinstance(field, ModelChoiceField):  # absent when the operator may not change it
            field.queryset = obj.versions.all() if obj is not None else ModelVersion.objects.none()
        return form

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        # The grants (allowed_tenants) are saved here: each tenant granted or refused goes to the audit log.
        before = services.grants_of(form.instance)
        super().save_related(request, form, formsets, change)
        services.record_grant_changes(form.instance, before)

    @admin.display(description="placement")
    def placement(self, obj: LLMModel) -> str:
        problems = [f"{v.version}: {v.placement_error}" for v in obj.versions.all() if v.placement_error]
        return "; ".join(problems) or "ok"

    def changelist_view(self, request: HttpRequest, extra_context=None):
        _warn_unplaceable(request)
        return super().changelist_view(request, extra_context)

    @admin.action(description="Grant to tenants…", permissions=["change"])
    def grant_to_tenants(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> TemplateResponse | None:
        # First the page choosing the tenants; its form posts back to this action ("apply").
        form = GrantForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            tenants = list(form.cleaned_data["tenants"])
            for model in queryset:
                granted = services.grant_model(model, tenants)
                slugs = ", ".join(tenant.slug for tenant in granted) or "none new (all had it)"
                messages.success(request, f"{model.name} granted to: {slugs}.")
            return None  # back to the list
        return TemplateResponse(request, "admin/catalog/llmmodel/grant_to_tenants.html", {
            **self.admin_site.each_context(request),
            "title": "Grant models to tenants",
            "opts": self.model._meta,
            "models": queryset,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })


@admin.register(ModelVersion)
class ModelVersionAdmin(CatalogChangesReplan):
    list_display = ["spec", "model", "version", "current", "device", "gpu_memory", "size_bytes", "placement_error",
                    "created_at"]
    list_filter = ["model", "device"]
    search_fields = ["model__name", "version", "sha256"]
    list_select_related = ["model"]
    fields = ["model", *VERSION_FIELDS]
    readonly_fields = VERSION_READONLY
    actions = ["make_current"]

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None):
        # Tasks pinned to a version must keep meaning the same thing: its identity is fixed.
        return [*self.readonly_fields, "model", "version"] if obj else self.readonly_fields

    @admin.display(description="current", boolean=True)
    def current(self, obj: ModelVersion) -> bool:
        return obj.is_current

    @admin.display(description="GPU memory")
    def gpu_memory(self, obj: ModelVersion) -> str:
        if not obj.gpu_memory_bytes:
            return "-"
        return f"{obj.gpu_memory_bytes / GIB:.1f} GiB"

    def changelist_view(self, request: HttpRequest, extra_context=None):
        _warn_unplaceable(request)
        return super().changelist_view(request, extra_context)

    @admin.action(description="Make current: new tasks naming the model run this version", permissions=["change"])
    def make_current(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        chosen: dict[str, ModelVersion] = {}
        for version in queryset.select_related("model"):
            if version.model.name in chosen:
                messages.error(request, f"Pick one version of {version.model.name}, not several.")
                return
            chosen[version.model.name] = version
        for version in chosen.values():
            services.make_version_current(version)
        messages.success(request, f"Current now: {', '.join(v.spec for v in chosen.values())}.")
