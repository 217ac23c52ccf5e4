"""Replanning placement when what it places changes.

The catalog (a lower layer) cannot call the workers' services, so its
changes reach the placement through signals: a model saved or deleted (enabled,
disabled, its alias moved), a version saved or deleted, and a task pinned to
a version that was idle (it becomes live and needs a worker). The run happens
once the change is committed; ``robust``: a failed run is logged, and the
periodic run (every minute) catches up.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from apps.catalog.models import LLMModel, ModelVersion
from apps.tasks.models import Task


def _replan_on_commit(**_) -> None:
    from apps.workers.services import apply_placement

    transaction.on_commit(apply_placement, robust=True)


def _replan_for_pinned_task(instance: Task, created: bool, **_) -> None:
    # Only a task naming a version other than the current one can make a version
    # live (the current one is live already), and only one placed nowhere needs a
    # run. instance.model is loaded at submission: no query for the first test.
    if not (created and instance.model_version_id):
        return
    if instance.model_version_id == instance.model.current_version_id:
        return
    from apps.workers.models import VersionPlacement

    if not VersionPlacement.objects.filter(version_id=instance.model_version_id).exists():
        _replan_on_commit()


def connect() -> None:
    for sender in (LLMModel, ModelVersion):
        post_save.connect(_replan_on_commit, sender=sender, dispatch_uid=f"replan-save-{sender.__name__}")
        post_delete.connect(_replan_on_commit, sender=sender, dispatch_uid=f"replan-delete-{sender.__name__}")
    post_save.connect(_replan_for_pinned_task, sender=Task, dispatch_uid="replan-pinned-task")
