"""A tenant's own keys and members, mounted under /api/v1/ (its API key decides who may)."""

from django.urls import path

import apps.core.converters  # noqa: F401 -- registers <id:…> and <name:…>
from apps.tenants.api.views import KeyDetailView, KeyListView, MemberDetailView, MemberListView

urlpatterns = [
    path("keys", KeyListView.as_view(), name="keys"),
    path("keys/<id:key_id>", KeyDetailView.as_view(), name="key"),
    path("members", MemberListView.as_view(), name="members"),
    path("members/<name:username>", MemberDetailView.as_view(), name="member"),
]
