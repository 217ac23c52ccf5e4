from django.urls import path

import apps.core.converters  # noqa: F401 -- registers <id:…> and <name:…>
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
    path("models/<name:name>", ModelPlacementDetailView.as_view(), name="ops-model-detail"),
    path("workers/<id:worker_id>/drain", WorkerDrainView.as_view(), name="ops-worker-drain"),
    path("workers/<id:worker_id>/undrain", WorkerUndrainView.as_view(), name="ops-worker-undrain"),
]
