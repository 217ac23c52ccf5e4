from rest_framework.routers import SimpleRouter

from apps.tasks.api.views import TaskViewSet, WorkflowViewSet

router = SimpleRouter(trailing_slash=False)  # /api/v1/tasks, as the Contracts write it
router.register("tasks", TaskViewSet, basename="task")
router.register("workflows", WorkflowViewSet, basename="workflow")

urlpatterns = router.urls
