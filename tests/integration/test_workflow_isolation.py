"""Another tenant's workflow does not exist as far as a tenant can tell."""

from __future__ import annotations

import uuid

import pytest

from apps.tasks.models import Task, TaskState, Workflow
from tests.integration.graph_support import WORKFLOWS, node, submit_workflow

pytestmark = pytest.mark.django_db


def _assert_workflow_not_found(response) -> None:
    assert response.status == 404, response.body
    assert response.body == {
        "error": {"type": "not_found_error", "code": "workflow_not_found", "message": "no workflow with this id",
                  "param": None}
    }


def test_another_tenants_workflow_is_not_found_like_a_missing_one(
    acme_api, globex_api, django_capture_on_commit_callbacks
):
    tasks = submit_workflow(acme_api, [node("a"), node("b", depends_on=["a"])], django_capture_on_commit_callbacks)
    workflow_id = str(Workflow.objects.get().pk)

    assert acme_api.get(f"{WORKFLOWS}/{workflow_id}").status == 200
    _assert_workflow_not_found(globex_api.get(f"{WORKFLOWS}/{workflow_id}"))
    _assert_workflow_not_found(globex_api.get(f"{WORKFLOWS}/{uuid.uuid4()}"))
    _assert_workflow_not_found(globex_api.post(f"{WORKFLOWS}/{workflow_id}/cancel"))

    assert set(Task.objects.filter(pk__in=tasks.values()).values_list("state", flat=True)) == {
        TaskState.QUEUED, TaskState.WAITING,
    }


def test_node_names_are_not_stored_in_plain_text(acme_api, django_capture_on_commit_callbacks):
    submit_workflow(acme_api, [node("merger-plan-zebra")], django_capture_on_commit_callbacks)
    stored = bytes(Workflow.objects.get().nodes_ciphertext)
    assert b"merger-plan-zebra" not in stored
