from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "apps.scheduler"
    label = "scheduler"
    verbose_name = "Scheduler"

    def ready(self) -> None:
        # Registers the periodic jobs with Huey in every process (the consumer runs them).
        from apps.scheduler import jobs  # noqa: F401
