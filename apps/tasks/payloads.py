"""Reading what a tenant wrote and a model generated: the task's encrypted
input, metadata and output, and a workflow's node names. Decrypted only here,
on demand, with the tenant's data key; nothing decrypted is stored."""

from __future__ import annotations

from typing import Any

from apps.tasks.models import Task, Workflow
from apps.tenants.data_keys import EncryptedColumns


def read_input(task: Task) -> dict[str, Any] | None:
    if task.input_ciphertext is None:
        return None
    return task.tenant.cipher.decrypt_json(task.input_ciphertext)


def read_meta(task: Task) -> dict[str, Any]:
    if task.meta_ciphertext is None:
        return {"metadata": {}, "client_ref": None}
    return task.tenant.cipher.decrypt_json(task.meta_ciphertext)


def read_output(task: Task) -> str | None:
    if task.output_ciphertext is None:
        return None
    return task.tenant.cipher.decrypt_json(task.output_ciphertext)["text"]


def node_ids(workflow: Workflow) -> dict[str, str]:
    """Node name → task id (as text), in submission order."""
    if workflow.nodes_ciphertext is None:
        return {}
    return workflow.tenant.cipher.decrypt_json(bytes(workflow.nodes_ciphertext))["nodes"]


# Where tasks keep ciphertext, for re-encryption and crypto-shredding
# (apps.tenants.data_keys; registered in TasksConfig.ready()). Workflows
# first: stores are purged in reverse, and a task's workflow is protected.
ENCRYPTED_STORES = (
    EncryptedColumns("tasks.workflows", Workflow.objects.for_tenant, ("nodes_ciphertext",)),
    EncryptedColumns(
        "tasks.tasks", Task.objects.for_tenant,
        ("input_ciphertext", "meta_ciphertext", "output_ciphertext", "progress_ciphertext"),
    ),
)
