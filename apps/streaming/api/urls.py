from django.urls import path

import apps.core.converters  # noqa: F401 -- registers <id:…>
from apps.streaming.api.views import StreamTokenView

urlpatterns = [
    path("tasks/<id:task_id>/stream-token", StreamTokenView.as_view(), name="task-stream-token"),
]
