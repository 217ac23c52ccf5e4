from rest_framework.routers import SimpleRouter

import apps.core.converters  # noqa: F401 -- registers <id:…>
from apps.tasks.api.views import TaskViewSet, WorkflowViewSet

# /api/v1/tasks, as the Contracts write it; path() syntax, so that each viewset's
# lookup_value_converter ("id") turns away a malformed id before the view runs.
router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("tasks", TaskViewSet, basename="task")
router.register("workflows", WorkflowViewSet, basename="workflow")

urlpatterns = router.urls
