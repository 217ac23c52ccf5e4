"""Task: one LLM generation a tenant asked for, with its state machine.

What the tenant wrote (prompt or messages, stop sequences, metadata,
client_ref) and what the model generated are stored only encrypted with the
tenant's data key. The plain columns are what the platform itself needs to
schedule and account: model, priority, numeric sampling parameters, state,
usage, timings.

Tasks form a DAG: ``TaskDependency`` links a task to the earlier tasks
(parents) it waits for. A ``Workflow`` is a graph submitted at once; its node
names are the tenant's words, so they too are stored only encrypted.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.catalog.models import LLMModel, ModelVersion
from apps.tenants.models import ApiKey, PriorityClass, Tenant


class TaskState(models.TextChoices):
    WAITING = "waiting"  # parents unfinished
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EndReason(models.TextChoices):
    """Why a task ended without succeeding: its ``error.code`` in the API and in
    the stream's ``done`` event (the one list). The label is the stored message
    where the reason needs no detail."""

    CANCELLED = "cancelled", "cancelled by the tenant"
    ERASED = "erased", "the task was erased"
    MODEL_UNAVAILABLE = "model_unavailable", "the model could not be loaded"
    GENERATION_FAILED = "generation_failed", "the model failed while generating"
    WORKER_LOST = "worker_lost", "the worker stopped responding"
    # A poison task: it failed, or its worker died, on every one of TASK_MAX_ATTEMPTS
    # attempts; the message names the last attempt's reason. The admin's dead letters.
    RETRIES_EXHAUSTED = "retries_exhausted", "failed on every attempt"
    # No active worker can hold its model version (apps.scheduler.placer), for longer
    # than UNPLACEABLE_TIMEOUT_SECONDS while it was queued.
    MODEL_UNPLACEABLE = "model_unplaceable", "no worker can hold the model version"
    DEPENDENCY_FAILED = "dependency_failed", "a dependency failed or was cancelled"
    # At its release (apps.tasks.dependencies), once the parents' outputs are in its input:
    INPUT_TOO_LONG = "input_too_long", "the input with its dependencies' outputs is longer than a prompt may be"
    BUDGET_EXCEEDED = "budget_exceeded", "the input with its dependencies' outputs does not fit in the token budget"


# Not an end: the error of an attempt given back to the queue for a retry.
RETRYING = "retrying"

# The ends of a task that used up TASK_MAX_ATTEMPTS (the admin's "dead letters"):
# each attempt failed, or its worker died under it (a poison task).
DEAD_LETTER_CODES = frozenset({EndReason.RETRIES_EXHAUSTED, EndReason.WORKER_LOST})


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
CANCELLABLE_BEFORE_START = frozenset({TaskState.WAITING, TaskState.QUEUED})


# A task's class: the Contracts' priority classes (apps.core.priorities), as plans know them.
Priority = PriorityClass


class TaskQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant) -> TaskQuerySet:
        """The only way tenant-facing code reaches tasks."""
        return self.filter(tenant=tenant)


class WorkflowQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant) -> WorkflowQuerySet:
        """The only way tenant-facing code reaches workflows."""
        return self.filter(tenant=tenant)


class Workflow(models.Model):
    """A graph of tasks submitted in one request (POST /api/v1/workflows)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="workflows")
    # {"nodes": {name: task id}} in submission order, encrypted with the tenant's key.
    nodes_ciphertext = models.BinaryField(null=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = WorkflowQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return str(self.id)


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="tasks")
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks")
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="tasks")
    # Fixed at submission ("name@version", or the model's current version then);
    # None for a model without versions. Moving the alias never changes it.
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="tasks"
    )
    # The routed model the tenant named (apps.catalog.routing), None for a task submitted
    # to the model that runs it: ``model`` is always the model that runs.
    routed_from = models.ForeignKey(
        LLMModel, on_delete=models.PROTECT, null=True, blank=True, related_name="routed_tasks"
    )
    # A routed task's candidates it left, oldest first, each with the last attempt it ran
    # there: [{"model": name, "attempts": n}] (apps.tasks.services.fall_back). Its attempts
    # on ``model`` count from the last one's; empty for a task that never fell back.
    fallbacks = models.JSONField(default=list, blank=True, editable=False)
    state = models.CharField(max_length=16, choices=TaskState.choices, default=TaskState.QUEUED)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)

    max_tokens = models.PositiveIntegerField()
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)

    # Encrypted with the tenant's data key (see apps.security.crypto).
    input_ciphertext = models.BinaryField(null=True, editable=False)  # prompt|messages, stop
    meta_ciphertext = models.BinaryField(null=True, editable=False)  # metadata, client_ref
    output_ciphertext = models.BinaryField(null=True, editable=False)
    # Blind index of client_ref: filterable without storing the value.
    client_ref_digest = models.CharField(max_length=64, blank=True, default="", editable=False)
    # The X-Request-ID of the request that submitted it, so the scheduler's and the
    # worker's log lines about the task carry it (apps.core.logs). An identifier made
    # to be logged (llmagentos.middleware accepts only [A-Za-z0-9._:-], 128 at most),
    # not content: stored as it is, like the id echoed in the response's header.
    request_id = models.CharField(max_length=128, blank=True, default="", editable=False)

    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    attempt = models.PositiveIntegerField(default=0)
    worker_name = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Preemption and time slicing (docs/scheduling.md). The scheduler asks a running
    # generation to give its slot back at its next token boundary (suspend_requested);
    # a suspended task is queued again with its progress: the text streamed so far and
    # its adapter's checkpoint, encrypted with the tenant's key, and the completion
    # tokens generated before it (a plain count: what scheduling needs). The same
    # attempt resumes it; a retry (a failed or lost attempt) starts over and drops it.
    suspend_requested = models.BooleanField(default=False)
    progress_ciphertext = models.BinaryField(null=True, editable=False)
    progress_tokens = models.PositiveIntegerField(default=0)
    preemptions = models.PositiveIntegerField(default=0)  # suspended for a task that outranked it
    slices = models.PositiveIntegerField(default=0)  # suspended at the end of a time slice
    # Where it waits among its flow's tasks: queued_at, or for a task whose time slice
    # ended, that moment (the back of the line: round robin). None: queued_at.
    turn_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When the recorded attempt produced its first text (the worker notes it and
    # writes it with the end): time to first token is first_token_at - queued_at.
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, null=True, blank=True, related_name="tasks")
    parents = models.ManyToManyField(
        "self", symmetrical=False, through="TaskDependency", related_name="children", blank=True
    )
    # The longest chain of tasks waiting (transitively) on this one, 0 when none:
    # starting high ranks first shortens a graph's run. Only ever raised.
    critical_path_rank = models.PositiveIntegerField(default=0)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="task_tenant_created"),
            # A tenant's pending and running counts: its queue cap at every
            # submission, its running cap at every dispatch round.
            models.Index(fields=["tenant", "state"], name="task_tenant_state"),
            models.Index(fields=["tenant", "client_ref_digest"], name="task_tenant_client_ref"),
            models.Index(fields=["state", "dispatched_at"], name="task_state_dispatched"),
            models.Index(fields=["state", "lease_expires_at"], name="task_state_lease"),
            # A model's latest finished tasks (wait estimates, on every submission):
            # without it, a scan of all the model's tasks.
            models.Index(fields=["model", "state", "-finished_at"], name="task_model_state_finished"),
            # The operations dashboard: the last hour's ends and the latest failures, all models.
            models.Index(fields=["state", "-finished_at"], name="task_state_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def attempts_on_model(self) -> int:
        """The attempts made on ``model`` (TASK_MAX_ATTEMPTS bounds these): ``attempt``
        itself, less those made on the candidates a routed task fell back from."""
        return self.attempt - (self.fallbacks[-1]["attempts"] if self.fallbacks else 0)

    @property
    def usage(self) -> dict[str, int] | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class TaskDependency(models.Model):
    """``child`` runs only once ``parent`` has succeeded."""

    child = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="parent_links")
    parent = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="child_links")

    class Meta:
        ordering = ["id"]  # the order depends_on was given in
        constraints = [models.UniqueConstraint(fields=["child", "parent"], name="unique_task_dependency")]


class IdempotencyKey(models.Model):
    """A tenant's Idempotency-Key and the task it created (for 24 hours).

    Both the key and the request fingerprint are blind indexes (HMACs with the
    tenant's key): equal values match, but nothing the tenant wrote is stored.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="idempotency_keys")
    key_digest = models.CharField(max_length=64)
    request_digest = models.CharField(max_length=64)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key_digest"], name="unique_idempotency_key")]
