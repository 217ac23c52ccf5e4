from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "apps.workers"
    label = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        # Registers run_task with Huey in every process that enqueues or consumes it.
        from apps.workers import jobs  # noqa: F401
