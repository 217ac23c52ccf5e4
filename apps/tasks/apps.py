from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "apps.tasks"
    label = "tasks"
    verbose_name = "Tasks"

    def ready(self) -> None:
        # Registers the periodic jobs with Huey in every process (the consumer runs them).
        from apps.tasks import dependencies, jobs, lifecycle, metrics, payloads  # noqa: F401
        from apps.tenants.data_keys import encrypted_stores

        lifecycle.ended.register("tasks.dependants", dependencies.task_ended)
        # Prometheus counters (apps.core.metrics), after commit: a rollback counts nothing.
        lifecycle.submitted.register("tasks.metrics", metrics.count_submitted)
        lifecycle.ended.register("tasks.metrics", metrics.count_end)
        for store in payloads.ENCRYPTED_STORES:
            encrypted_stores.register(store)
