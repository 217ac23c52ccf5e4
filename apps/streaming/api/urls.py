from django.urls import path

from apps.streaming.api.views import StreamTokenView

urlpatterns = [
    path("tasks/<str:task_id>/stream-token", StreamTokenView.as_view(), name="task-stream-token"),
]
