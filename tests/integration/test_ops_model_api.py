"""Operators register and change models through the API: POST /api/v1/ops/models and
PATCH /api/v1/ops/models/{name}, validated by the model's adapter as add_model is. A
registered model is usable at once by the tenants it is open to, and managed workers
are told to serve it at their next heartbeat."""

from __future__ import annotations

import uuid

import pytest

from apps.catalog.models import LLMModel
from apps.catalog.services import create_version
from apps.runtime.execution import execute_task
from apps.security.services import issue_operator_token
from apps.workers import services as worker_services
from tests.conftest import ApiClient
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/ops/models"


@pytest.fixture
def operator(db) -> ApiClient:
    return ApiClient(issue_operator_token(make_operator(), name="tests").secret)


def _register(operator: ApiClient, **body) -> dict:
    created = operator.post(MODELS, {"adapter": "echo", **body})
    assert created.status == 201, created.body
    return created.body


def _visible(api: ApiClient) -> set[str]:
    return {model["id"] for model in api.get("/api/v1/models").body["data"]}


def _refused(response, param: str) -> str:
    assert (response.status, response.body["error"]["param"]) == (400, param), response.body
    return response.body["error"]["message"]


def test_a_registered_model_serves_the_tenants_granted_it_at_once(operator, acme, acme_api, globex_api):
    created = _register(operator, name="echo-acme", tenants=["acme"], description="acme's echo")

    assert (created["name"], created["adapter"], created["adapter_config"]) == ("echo-acme", "echo", {})
    assert (created["tenants"], created["is_public"], created["enabled"]) == (["acme"], False, True)
    assert created["description"] == "acme's echo" and created["versions"] == []
    assert "echo-acme" in {model["name"] for model in operator.get(MODELS).body["data"]}
    assert "echo-acme" in _visible(acme_api) and "echo-acme" not in _visible(globex_api)

    task = acme_api.post("/api/v1/tasks", {"model": "echo-acme", "prompt": "hello there"})
    assert task.status == 201, task.body
    execute_task(uuid.UUID(task.body["id"]))
    assert acme_api.get(f"/api/v1/tasks/{task.body['id']}").body["output"] == "hello there"


def test_what_the_adapter_or_the_fields_refuse_is_a_400_naming_the_field_and_records_nothing(operator):
    before = LLMModel.objects.count()

    message = _refused(
        operator.post(MODELS, {"name": "bad", "adapter": "echo", "adapter_config": {"words_per_second": -1}}),
        "adapter_config",
    )
    assert "words_per_second: must be a number >= 0" in message  # the echo adapter's own words
    assert "no adapter named 'nope'" in _refused(operator.post(MODELS, {"name": "bad", "adapter": "nope"}), "adapter")
    _refused(operator.post(MODELS, {"name": "Not A Name", "adapter": "echo"}), "name")
    _refused(operator.post(MODELS, {"name": "bad", "adapter": "echo", "tenants": ["no-such-tenant"]}), "tenants")
    _refused(operator.post(MODELS, {"name": "bad", "adapter": "echo", "temperature": 1}), "temperature")

    assert LLMModel.objects.count() == before


def test_patch_changes_only_the_fields_given(operator, acme, acme_api, globex_api):
    _register(operator, name="echo-acme", adapter_config={"words_per_second": 50}, tenants=["acme"])
    path = f"{MODELS}/echo-acme"

    opened = operator.patch(path, {"is_public": True})
    assert opened.status == 200, opened.body
    assert (opened.body["is_public"], opened.body["tenants"]) == (True, ["acme"])
    assert opened.body["adapter_config"] == {"words_per_second": 50}
    assert "echo-acme" in _visible(globex_api)

    refused = operator.patch(path, {"adapter_config": {"words_per_second": "fast"}})
    assert "words_per_second" in _refused(refused, "adapter_config")
    assert LLMModel.objects.get(name="echo-acme").adapter_config == {"words_per_second": 50}
    _refused(operator.patch(path, {"name": "renamed"}), "name")  # the name is the model's identity

    closed = operator.patch(path, {"enabled": False, "is_public": False, "tenants": []})
    assert closed.status == 200, closed.body
    assert (closed.body["enabled"], closed.body["is_public"], closed.body["tenants"]) == (False, False, [])
    submitted = acme_api.post("/api/v1/tasks", {"model": "echo-acme", "prompt": "hi"})
    assert (submitted.status, submitted.body["error"]["code"]) == (400, "model_not_found")


def test_a_versioned_models_config_is_checked_with_its_current_versions_artifact(operator, tiny_model_path):
    # The version supplies "path" (its artifact): a model config without one is complete for it…
    versioned = LLMModel.objects.create(name="tiny-versioned", adapter="transformers",
                                        adapter_config={"path": tiny_model_path})
    create_version(versioned, "v1", tiny_model_path, make_current=True)
    changed = operator.patch(f"{MODELS}/tiny-versioned", {"adapter_config": {"device": "cpu"}})
    assert changed.status == 200, changed.body
    assert changed.body["current_version"] == "v1"

    # …and incomplete for a model that runs from its own config.
    LLMModel.objects.create(name="tiny-plain", adapter="transformers", adapter_config={"path": tiny_model_path})
    message = _refused(operator.patch(f"{MODELS}/tiny-plain", {"adapter_config": {"device": "cpu"}}), "adapter_config")
    assert "path: required" in message


def test_a_managed_worker_is_told_to_serve_a_new_model_at_its_next_heartbeat(operator):
    worker = worker_services.register_worker(name="w-1", host="h", pid=1, slots=2, device_info={})
    beat = {"in_flight": 0, "idle": True, "device_info": {}}
    assert "echo-new" not in worker_services.heartbeat(worker.id, **beat).model_names

    _register(operator, name="echo-new", is_public=True)

    assert "echo-new" in worker_services.heartbeat(worker.id, **beat).model_names
