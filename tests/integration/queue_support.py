"""A model's queue in a known shape, for the tests of wait estimates and of the views that show them."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from apps.tasks.models import Task, TaskState
from apps.workers.services import register_worker


def busy_two_slot_queue(api, model_name: str) -> list[str]:
    """One 2-slot worker serves ``model_name``; of six tasks submitted, two finished
    in 3 s each (the history), two run (both slots busy) and two wait. Their ids."""
    register_worker(name=f"w-{model_name}", host="h", pid=1, slots=2, device_info={}, model_names=[model_name])
    now = timezone.now()
    ids = [api.post("/api/v1/tasks", {"model": model_name, "prompt": f"p{i}"}).body["id"] for i in range(6)]
    Task.objects.filter(pk__in=ids[:2]).update(
        state=TaskState.SUCCEEDED, started_at=now - timedelta(seconds=3), finished_at=now
    )
    Task.objects.filter(pk__in=ids[2:4]).update(state=TaskState.RUNNING, started_at=now)
    return ids
