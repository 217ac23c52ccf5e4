from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "apps.scheduler"
    label = "scheduler"
    verbose_name = "Scheduler"

    def ready(self) -> None:
        # jobs: registers the periodic jobs with Huey in every process (the consumer runs them).
        from apps.catalog import hooks as catalog_hooks
        from apps.scheduler import admission, estimates, jobs, placer, wakeup  # noqa: F401
        from apps.tasks import lifecycle
        from apps.tenants import hooks as tenant_hooks

        # What the tasks app asks and announces (apps.tasks.lifecycle has the table).
        lifecycle.admit.register(admission.admit)
        lifecycle.admit_release.register(admission.admit_release)
        lifecycle.estimate_wait.register(estimates.task_wait)
        lifecycle.estimate_model_wait.register(estimates.model_wait)
        lifecycle.ending.register("scheduler.settle", admission.settle_task)
        lifecycle.ended.register("scheduler.wake", wakeup.slot_freed)
        lifecycle.ready.register("scheduler.wake", wakeup.wake_dispatcher)
        lifecycle.submitted.register("scheduler.place_pinned", placer.place_pinned_version)
        lifecycle.placing.register("scheduler.judge_version", placer.judge_version)
        catalog_hooks.placement_inputs_changed.register("scheduler.place", placer.replan)
        # The fleet or the catalog changed (a worker registered, drained, undrained,
        # stopped): the slots to fill did too.
        catalog_hooks.placement_inputs_changed.register("scheduler.wake", wakeup.wake_dispatcher)
        # A resumed tenant's queued tasks may start now.
        tenant_hooks.tenant_resumed.register("scheduler.wake", wakeup.wake_dispatcher)
