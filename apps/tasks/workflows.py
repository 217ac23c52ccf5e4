"""Workflows: graphs of tasks submitted at once, their status and cancellation.

Each node is a task like any other (apps.tasks.services.submit_task); the
dependency rules between them live in apps.tasks.dependencies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from django.db import transaction

from apps.core.errors import DomainError
from apps.tasks import graph, services
from apps.tasks.dependencies import DEPENDENCY_FAILED, UNFINISHED_STATES
from apps.tasks.models import TERMINAL_STATES, Task, TaskState, Workflow
from apps.tasks.payloads import node_ids
from apps.tenants.models import ApiKey, Tenant
from apps.tenants.ratelimit import RateLimits
from apps.tenants.services import refuse_if_paused

MAX_WORKFLOW_NODES = 100


@dataclass(frozen=True)
class WorkflowNode:
    """One node of a submitted workflow; ``request.depends_on`` holds parent node names."""

    name: str
    request: services.TaskRequest


@dataclass(frozen=True)
class WorkflowSubmission:
    workflow: Workflow
    task_ids: dict[str, uuid.UUID]  # node name → task id, in submission order
    rate_limits: RateLimits | None  # the tenant's buckets after admitting the last node


def submit_workflow(tenant: Tenant, api_key: ApiKey | None, nodes: Sequence[WorkflowNode]) -> WorkflowSubmission:
    """Create every node's task in one transaction (all or nothing).

    The graph was validated (unique names, known parents, no cycle, references
    to parents only) by the API serializer. Each node goes through
    ``services.submit_task`` like a single task — same model check, same
    admission — parents first. Each node's critical-path rank is stored; the
    dispatcher (apps.scheduler) starts a tenant's higher ranks first.
    """
    refuse_if_paused(tenant)  # once for the workflow, not as the first node's refusal
    depends_on = {node.name: tuple(dict.fromkeys(node.request.depends_on)) for node in nodes}
    ranks = graph.critical_path_ranks(depends_on)
    position = {node.name: index for index, node in enumerate(nodes)}
    by_name = {node.name: node for node in nodes}
    task_ids: dict[str, uuid.UUID] = {}
    submission: services.Submission | None = None
    with transaction.atomic():
        workflow = Workflow.objects.create(tenant=tenant)
        for name in graph.topological_order(depends_on):
            request = replace(by_name[name].request, depends_on=tuple(str(task_ids[p]) for p in depends_on[name]))
            try:
                submission = services.submit_task(tenant, api_key, request)
            except DomainError as error:
                raise _in_node(error, position[name], name) from error
            # Set before any child links to it, so the child's _raise_ranks finds
            # nothing to raise (else a chain of n nodes costs n² updates).
            task_id = submission.task.pk
            Task.objects.filter(pk=task_id).update(workflow=workflow, critical_path_rank=ranks[name])
            task_ids[name] = task_id
        in_submission_order = {node.name: task_ids[node.name] for node in nodes}
        workflow.nodes_ciphertext = tenant.cipher.encrypt_json(
            {"nodes": {name: str(task_id) for name, task_id in in_submission_order.items()}}
        )
        workflow.save(update_fields=["nodes_ciphertext"])
    return WorkflowSubmission(
        workflow=workflow, task_ids=in_submission_order, rate_limits=submission.rate_limits if submission else None
    )


def _in_node(error: DomainError, index: int, name: str) -> DomainError:
    """A node's refusal, pointed at the node (``model`` → ``nodes.2.model``)."""
    return error.relocated(f"node {name!r}: {error.message}", f"nodes.{index}.{error.param}" if error.param else None)

def workflow_tasks(workflow: Workflow) -> dict[str, Task]:
    """Node name → its task (parent links prefetched), in submission order."""
    tasks = {str(task.pk): task for task in workflow.tasks.prefetch_related("parent_links")}
    return {name: tasks[task_id] for name, task_id in node_ids(workflow).items()}


def workflow_status(tasks: Iterable[Task]) -> str:
    """One word for the graph, from its nodes' states.

    ``queued`` until a node starts; ``running`` while any node is unfinished
    after that; at the end ``succeeded`` when all did, ``failed`` when a node
    failed by itself, else ``cancelled`` when one was cancelled (its
    descendants fail with dependency_failed, but the cause was the cancel).
    """
    tasks = list(tasks)
    states = {task.state for task in tasks}
    if not states <= TERMINAL_STATES:
        started = states - {TaskState.WAITING, TaskState.QUEUED}
        return "running" if started else "queued"
    if any(task.state == TaskState.FAILED and task.error_code != DEPENDENCY_FAILED for task in tasks):
        return "failed"
    if TaskState.CANCELLED in states:
        return "cancelled"
    if TaskState.FAILED in states:
        return "failed"
    return "succeeded"


def cancel_workflow(workflow: Workflow) -> None:
    """Cancel every unfinished node (running ones stop at their next chunk).

    Children before parents — a child's rank is always below its parents' —
    so every node ends ``cancelled`` rather than failed by a cancelled parent.
    """
    with transaction.atomic():
        unfinished = workflow.tasks.filter(state__in=UNFINISHED_STATES).order_by("critical_path_rank")
        for task in unfinished.select_related("tenant"):
            services.cancel_task(task)
