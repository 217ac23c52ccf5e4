from django.urls import path

from apps.workers.api.views import (
    ModelPlacementDetailView,
    ModelPlacementListView,
    WorkerDrainView,
    WorkerListView,
    WorkerUndrainView,
)

urlpatterns = [
    path("workers", WorkerListView.as_view(), name="ops-worker-list"),
    path("models", ModelPlacementListView.as_view(), name="ops-model-list"),
    path("models/<str:name>", ModelPlacementDetailView.as_view(), name="ops-model-detail"),
    path("workers/<uuid:worker_id>/drain", WorkerDrainView.as_view(), name="ops-worker-drain"),
    path("workers/<uuid:worker_id>/undrain", WorkerUndrainView.as_view(), name="ops-worker-undrain"),
]
