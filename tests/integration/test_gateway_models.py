"""GET /v1/models (and /v1/models/{id}): the models the calling tenant may use,
in OpenAI's list shape; another tenant's private model is as absent as a
model that does not exist."""

from __future__ import annotations

import pytest

from apps.catalog.models import LLMModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def private_models(acme, globex) -> None:
    LLMModel.objects.create(name="acme-only", adapter="echo", is_public=False).allowed_tenants.add(acme)
    LLMModel.objects.create(name="globex-only", adapter="echo", is_public=False).allowed_tenants.add(globex)
    LLMModel.objects.create(name="retired", adapter="echo", is_public=True, enabled=False)


def test_the_list_holds_the_tenants_models_only(acme_api, globex_api, private_models):
    listed = acme_api.get("/v1/models")

    assert listed.status == 200, listed.body
    assert listed.body["object"] == "list"
    names = {model["id"] for model in listed.body["data"]}
    assert {"echo", "acme-only"} <= names
    assert not names & {"globex-only", "retired"}
    for model in listed.body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}, model
        assert (model["object"], model["owned_by"]) == ("model", "llmagentos")
        assert isinstance(model["created"], int)
    assert "acme-only" not in {model["id"] for model in globex_api.get("/v1/models").body["data"]}


def test_one_model_by_id(acme_api, private_models):
    found = acme_api.get("/v1/models/acme-only")

    assert found.status == 200, found.body
    assert (found.body["id"], found.body["object"]) == ("acme-only", "model")
    for name in ("globex-only", "retired", "no-such-model"):
        missing = acme_api.get(f"/v1/models/{name}")
        assert missing.status == 404, missing.body
        error = missing.body["error"]
        assert (error["type"], error["code"], error["param"]) == ("not_found_error", "model_not_found", "model")
