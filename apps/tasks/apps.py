from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "apps.tasks"
    label = "tasks"
    verbose_name = "Tasks"

    def ready(self) -> None:
        # Registers the periodic jobs with Huey in every process (the consumer runs them).
        from apps.tasks import jobs  # noqa: F401
