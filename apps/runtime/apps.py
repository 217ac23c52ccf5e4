from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    """The worker process (``run_worker``) and the embedded supervisor (``run_platform``):
    the top layer, which runs what the apps below decide."""

    name = "apps.runtime"
    label = "runtime"
    verbose_name = "Worker runtime"

    def ready(self) -> None:
        from apps.runtime import execution
        from apps.scheduler import queues

        # A message on a model's queue names the task; running it is this layer's job.
        queues.task_executor.register(execution.execute_task)
