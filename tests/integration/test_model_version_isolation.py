"""Tenants and versions: a tenant can neither pin nor see the versions of a model it may
not use, and a version label means something only under its own model."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel
from apps.tasks.models import Task

pytestmark = pytest.mark.django_db


@pytest.fixture
def secret(globex, tmp_path: Path) -> LLMModel:
    """A private model granted to globex only, with two versions."""
    model = LLMModel.objects.create(name="secret", adapter="echo", is_public=False)
    model.allowed_tenants.add(globex)
    for label in ("v1", "v2"):
        (tmp_path / label).mkdir()
        catalog.create_version(model, label, str(tmp_path / label), make_current=label == "v1")
    return model


def refusal(api, spec: str) -> dict:
    response = api.post("/api/v1/tasks", {"model": spec, "prompt": "hi"})
    assert response.status == 400, response.body
    error = response.body["error"]
    assert error["message"] == f"model {spec!r} does not exist or is not available"
    return {key: value for key, value in error.items() if key != "message"}


def test_another_tenants_private_model_cannot_be_pinned(acme_api, globex_api, secret):
    # Refused exactly as a model that does not exist: nothing tells acme "secret" exists.
    assert refusal(acme_api, "secret@v1") == refusal(acme_api, "secret") == refusal(acme_api, "nope@v1") == {
        "type": "invalid_request_error", "code": "model_not_found", "param": "model"
    }
    assert not Task.objects.exists()

    allowed = globex_api.post("/api/v1/tasks", {"model": "secret@v2", "prompt": "hi"})
    assert allowed.status == 201, allowed.body
    assert allowed.body["model_version"] == "v2"
    assert acme_api.get(f"/api/v1/tasks/{allowed.body['id']}").status == 404


def test_a_version_label_of_one_model_cannot_be_pinned_under_another(acme_api, secret):
    # echo has no "v1": secret's "v1" is not reachable through a model acme may use.
    assert refusal(acme_api, "echo@v1")["code"] == "model_not_found"


def test_versions_of_private_models_are_not_listed(acme_api, globex_api, secret):
    seen_by_acme = {m["id"]: m for m in acme_api.get("/api/v1/models").body["data"]}
    seen_by_globex = {m["id"]: m for m in globex_api.get("/api/v1/models").body["data"]}

    assert "secret" not in seen_by_acme
    assert all("v1" not in m["versions"] for m in seen_by_acme.values())
    assert seen_by_globex["secret"]["versions"] == ["v1", "v2"]
    assert seen_by_globex["secret"]["current_version"] == "v1"


def test_a_disabled_models_versions_cannot_be_pinned(globex_api, secret):
    LLMModel.objects.filter(pk=secret.pk).update(enabled=False)

    assert refusal(globex_api, "secret@v1")["code"] == "model_not_found"
