"""One tenant can neither see, change nor detect another tenant's tasks and models.

Another tenant's object answers exactly like one that does not exist (404, or
for a model the same 400 as an unknown name).
"""

from __future__ import annotations

import uuid

import pytest

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.tasks.models import Task
from apps.tasks.services import claim_task

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
ACME_PROMPT = "acme quarterly numbers"
ACME_REF = "acme-ref-0001"


@pytest.fixture
def acme_task(acme_api) -> dict:
    created = acme_api.post(
        TASKS, {"model": "echo", "prompt": ACME_PROMPT, "client_ref": ACME_REF, "metadata": {"owner": "acme"}}
    )
    assert created.status == 201, created.body
    return created.body


@pytest.fixture
def private_model(acme) -> LLMModel:
    model = LLMModel.objects.create(name="acme-private", adapter="echo", is_public=False, enabled=True)
    model.allowed_tenants.add(acme)
    return model


def _assert_task_not_found(response):
    assert response.status == 404, response.body
    assert response.body == {
        "error": {"type": "not_found_error", "code": "task_not_found", "message": response.body["error"]["message"],
                  "param": None}
    }


def _attempts(api, task_id):
    return {
        "get": api.get(f"{TASKS}/{task_id}"),
        "cancel": api.post(f"{TASKS}/{task_id}/cancel"),
        "delete": api.delete(f"{TASKS}/{task_id}"),
    }


def test_another_tenants_task_is_404_like_a_missing_one(acme_task, globex_api):
    foreign = _attempts(globex_api, acme_task["id"])
    missing = _attempts(globex_api, str(uuid.uuid4()))
    for route in ("get", "cancel", "delete"):
        _assert_task_not_found(foreign[route])
        _assert_task_not_found(missing[route])
        assert foreign[route].body == missing[route].body, route
        assert foreign[route].headers.get("Content-Type") == missing[route].headers.get("Content-Type")


def test_acme_task_is_intact_after_globex_attempts(acme_api, acme_task, globex_api):
    for _ in range(2):
        _attempts(globex_api, acme_task["id"])
    task = Task.objects.get(pk=acme_task["id"])
    assert task.state == "queued"
    assert task.erased_at is None
    assert task.cancel_requested is False
    shown = acme_api.get(f"{TASKS}/{acme_task['id']}")
    assert shown.status == 200
    assert shown.body["status"] == "queued"
    assert shown.body["erased"] is False
    assert shown.body["input"] == {"prompt": ACME_PROMPT}
    assert shown.body["metadata"] == {"owner": "acme"}
    assert shown.body["client_ref"] == ACME_REF


def test_another_tenants_running_task_cannot_be_cancelled(acme_api, acme_task, globex_api):
    assert claim_task(uuid.UUID(acme_task["id"]), "test-worker") is not None  # now running
    _assert_task_not_found(globex_api.post(f"{TASKS}/{acme_task['id']}/cancel"))
    assert Task.objects.get(pk=acme_task["id"]).cancel_requested is False


def test_another_tenants_finished_task_output_is_not_reachable(acme_api, acme_task, globex_api):
    execute_task(uuid.UUID(acme_task["id"]))
    assert acme_api.get(f"{TASKS}/{acme_task['id']}").body["output"] == ACME_PROMPT
    foreign = globex_api.get(f"{TASKS}/{acme_task['id']}")
    _assert_task_not_found(foreign)
    assert ACME_PROMPT.encode() not in repr(foreign.body).encode()
    _assert_task_not_found(globex_api.delete(f"{TASKS}/{acme_task['id']}"))
    assert acme_api.get(f"{TASKS}/{acme_task['id']}").body["output"] == ACME_PROMPT


def test_globex_list_never_shows_acme_tasks(acme_task, acme_api, globex_api):
    mine = globex_api.post(TASKS, {"model": "echo", "prompt": "globex work"})
    assert mine.status == 201

    listed = globex_api.get(TASKS)
    assert listed.status == 200
    assert [t["id"] for t in listed.body["results"]] == [mine.body["id"]]

    by_ref = globex_api.get(TASKS, {"client_ref": ACME_REF})
    assert by_ref.status == 200
    assert by_ref.body["results"] == []

    by_status = globex_api.get(TASKS, {"status": "queued"})
    assert [t["id"] for t in by_status.body["results"]] == [mine.body["id"]]

    # ...while acme finds its own task by that reference.
    acme_by_ref = acme_api.get(TASKS, {"client_ref": ACME_REF})
    assert [t["id"] for t in acme_by_ref.body["results"]] == [acme_task["id"]]


def test_same_client_ref_in_two_tenants_stays_apart(acme_task, acme_api, globex_api):
    globex_task = globex_api.post(TASKS, {"model": "echo", "prompt": "g", "client_ref": ACME_REF})
    assert globex_task.status == 201
    globex_by_ref = globex_api.get(TASKS, {"client_ref": ACME_REF}).body["results"]
    acme_by_ref = acme_api.get(TASKS, {"client_ref": ACME_REF}).body["results"]
    assert [t["id"] for t in globex_by_ref] == [globex_task.body["id"]]
    assert [t["id"] for t in acme_by_ref] == [acme_task["id"]]


def test_private_model_is_listed_only_for_its_tenant(private_model, acme_api, globex_api):
    acme_models = acme_api.get("/api/v1/models")
    globex_models = globex_api.get("/api/v1/models")
    assert acme_models.status == globex_models.status == 200
    acme_names = {m["id"] for m in acme_models.body["data"]}
    globex_names = {m["id"] for m in globex_models.body["data"]}
    assert "acme-private" in acme_names
    assert "acme-private" not in globex_names
    assert "echo" in acme_names and "echo" in globex_names


def test_private_model_is_usable_by_its_tenant(private_model, acme_api):
    created = acme_api.post(TASKS, {"model": "acme-private", "prompt": "hi"})
    assert created.status == 201, created.body
    assert created.body["model"] == "acme-private"


def test_private_model_answers_globex_like_a_nonexistent_one(private_model, globex_api):
    refused = globex_api.post(TASKS, {"model": "acme-private", "prompt": "hi"})
    assert refused.status == 400
    assert refused.body["error"]["code"] == "model_not_found"
    assert refused.body["error"]["param"] == "model"

    # The same name once the model is gone altogether: byte-for-byte the same answer.
    LLMModel.objects.filter(pk=private_model.pk).delete()
    gone = globex_api.post(TASKS, {"model": "acme-private", "prompt": "hi"})
    assert gone.status == 400
    assert gone.body == refused.body

    # And a name that never existed differs only by the name it echoes.
    never = globex_api.post(TASKS, {"model": "acme-nothing", "prompt": "hi"})
    assert never.status == 400
    assert never.body["error"] | {"message": None} == refused.body["error"] | {"message": None}
    assert never.body["error"]["message"].replace("acme-nothing", "acme-private") == refused.body["error"]["message"]
    assert Task.objects.count() == 0


def test_disabling_a_private_model_hides_it_from_its_tenant(private_model, acme_api):
    LLMModel.objects.filter(pk=private_model.pk).update(enabled=False)
    assert "acme-private" not in {m["id"] for m in acme_api.get("/api/v1/models").body["data"]}
    refused = acme_api.post(TASKS, {"model": "acme-private", "prompt": "hi"})
    assert refused.status == 400
    assert refused.body["error"]["code"] == "model_not_found"
