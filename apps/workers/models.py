"""Worker nodes: what each one is, what it serves, and whether it is alive.

Only apps.workers.services writes these rows. "Lost" is not stored: it is
read from the heartbeat's age (``WORKER_LOST_SECONDS``) whenever asked, so a
worker that dies without a word shows as lost without any reaper, and shows
as alive again the moment it heartbeats.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.catalog.models import LLMModel, ModelVersion


class WorkerState(models.TextChoices):
    ACTIVE = "active"  # takes tasks
    DRAINING = "draining"  # an operator asked it to take nothing new; not yet confirmed idle
    DRAINED = "drained"  # it confirmed: takes nothing new and has nothing in flight
    STOPPED = "stopped"  # exited cleanly


# States of a running process: the ones whose heartbeat can go stale.
RUNNING_STATES = (WorkerState.ACTIVE, WorkerState.DRAINING, WorkerState.DRAINED)
LOST = "lost"  # the derived status of a running-state worker whose heartbeats stopped


def lost_cutoff(now: datetime | None = None) -> datetime:
    """A running-state worker whose last heartbeat is older than this is lost."""
    return (now or timezone.now()) - timedelta(seconds=settings.WORKER_LOST_SECONDS)


def in_live_views(now: datetime | None = None) -> models.Q:
    """The workers the live views show (the admin's list by default, the ops API without
    ``history``): all but those lost or stopped for longer than LOST_WORKER_RETENTION_SECONDS,
    whose rows stay for history. (A stopped worker's last heartbeat is its stop.)"""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.LOST_WORKER_RETENTION_SECONDS)
    return models.Q(last_heartbeat_at__gte=cutoff)


class WorkerQuerySet(models.QuerySet):
    def alive(self) -> WorkerQuerySet:
        return self.filter(state__in=RUNNING_STATES, last_heartbeat_at__gte=lost_cutoff())

    def lost(self) -> WorkerQuerySet:
        return self.filter(state__in=RUNNING_STATES, last_heartbeat_at__lt=lost_cutoff())


class Worker(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Also what the worker writes into Task.worker_name (same length limit).
    name = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    slots = models.PositiveIntegerField(help_text="tasks it runs at once")
    # {"gpus": [{index, name, memory_total, memory_free, utilization}], "cpu_count",
    #  "ram_total", "ram_available"}; bytes and percent, refreshed by each heartbeat.
    device_info = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=WorkerState.choices, default=WorkerState.ACTIVE)
    in_flight = models.PositiveIntegerField(default=0, help_text="tasks running at the last heartbeat")
    # True: placed on every enabled model, re-read at each heartbeat (run_worker
    # without --models); False: exactly the models it registered with.
    serves_all_models = models.BooleanField(default=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # The last field on purpose: from here on in this class body "models" is
    # this field, not django.db.models (Meta below has its own scope).
    models = models.ManyToManyField(LLMModel, through="Placement", related_name="workers", blank=True)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["state", "last_heartbeat_at"], name="worker_state_heartbeat")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_lost(self) -> bool:
        return self.state in RUNNING_STATES and self.last_heartbeat_at < lost_cutoff()

    @property
    def status(self) -> str:
        """The state, or "lost" when a running worker's heartbeats stopped."""
        return LOST if self.is_lost else self.state


class Placement(models.Model):
    """A model placed on a worker: the worker consumes that model's queue(s).

    For a model with versions the queues are per version ("name@version") and
    VersionPlacement says which of them a managed worker consumes.
    """

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="placements")
    model = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="placements")
    placed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "model"], name="unique_placement")]

    def __str__(self) -> str:
        return f"{self.model} on {self.worker}"


class VersionPlacement(models.Model):
    """A model version placed on a managed worker by the placement run
    (apps.scheduler.placer.apply_placement): the worker consumes the version's
    queue, and the version's GPU memory is reserved on ``gpu_index``."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="version_placements")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="placements")
    gpu_index = models.PositiveIntegerField(null=True, blank=True, help_text="None: on the worker's CPU")
    gpu_memory_bytes = models.BigIntegerField(default=0, help_text="reserved on that GPU")
    placed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "version"], name="unique_version_placement")]

    def __str__(self) -> str:
        where = f"GPU {self.gpu_index}" if self.gpu_index is not None else "CPU"
        return f"{self.version} on {self.worker} ({where})"


class ReplicaTarget(models.Model):
    """How many copies of a GPU model version the replica scaler wants, and its timers.

    Written only by the placement run (apps.scheduler.placer.apply_placement),
    which may run in any process (the scheduler, a worker registering, an
    operator's drain): the scaler's state lives here rather than in one
    process's memory. The rule is apps.scheduler.autoscale's; the copies
    actually placed are the version's VersionPlacement rows.
    """

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="replica_target")
    desired = models.PositiveIntegerField(default=1, help_text="replicas wanted, the primary included")
    long_since = models.DateTimeField(null=True, blank=True, help_text="since when its queue has been long")
    idle_since = models.DateTimeField(null=True, blank=True, help_text="since when it has been idle")
    changed_at = models.DateTimeField(null=True, blank=True, help_text="when desired last changed")
    reason = models.TextField(blank=True, default="", help_text="why desired last changed")

    def __str__(self) -> str:
        return f"{self.version}: {self.desired} replicas wanted"
