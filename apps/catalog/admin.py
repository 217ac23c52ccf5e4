from django.contrib import admin

from apps.catalog.models import LLMModel


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = ["name", "adapter", "enabled", "is_public", "created_at"]
    list_filter = ["adapter", "enabled", "is_public"]
    search_fields = ["name", "description"]
    filter_horizontal = ["allowed_tenants"]
