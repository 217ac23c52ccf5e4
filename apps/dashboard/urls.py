"""/ops/: the operations dashboard (staff only)."""

from django.urls import path

from apps.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.ops_page_view, name="ops"),
    path("snapshot.json", views.snapshot_json, name="snapshot"),
]
