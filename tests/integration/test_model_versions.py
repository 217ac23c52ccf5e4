"""Model versions and the alias: "name" runs the current version as of submission,
"name@version" pins one, and the version's artifact reaches its adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.catalog import services as catalog
from apps.catalog.artifacts import digest
from apps.catalog.models import LLMModel, ModelVersion
from apps.runtime.execution import execute_task
from apps.tasks import payloads
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db


def artifact(tmp_path: Path, name: str) -> str:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "weights.bin").write_bytes(name.encode() * 100)
    return str(directory)


@pytest.fixture
def roll(db) -> LLMModel:
    return LLMModel.objects.create(name="roll", adapter="echo", is_public=True)


@pytest.fixture
def v1(roll, tmp_path) -> ModelVersion:
    return catalog.create_version(roll, "v1", artifact(tmp_path, "v1"), make_current=True)


@pytest.fixture
def v2(roll, v1, tmp_path) -> ModelVersion:
    return catalog.create_version(roll, "v2", artifact(tmp_path, "v2"))


def submit(api, model: str, prompt: str = "hello versions"):
    return api.post("/api/v1/tasks", {"model": model, "prompt": prompt})


def test_a_version_records_its_artifact_digest_and_what_it_needs(v1, tmp_path):
    v1.refresh_from_db()
    assert v1.sha256 == digest(tmp_path / "v1").sha256
    assert v1.size_bytes == 200
    assert (v1.device, v1.gpu_memory_bytes) == ("cpu", 0)  # asked of the echo adapter
    assert v1.spec == "roll@v1" and v1.is_current


def test_the_plain_name_runs_the_current_version_at_submission(acme_api, v1, v2):
    created = submit(acme_api, "roll")

    assert created.status == 201, created.body
    assert (created.body["model"], created.body["model_version"]) == ("roll", "v1")
    assert Task.objects.get(pk=created.body["id"]).model_version == v1


def test_moving_the_alias_changes_new_submissions_only(acme_api, v1, v2):
    before = submit(acme_api, "roll").body["id"]

    catalog.make_version_current(v2)
    after = submit(acme_api, "roll").body["id"]

    assert Task.objects.get(pk=before).model_version == v1
    assert Task.objects.get(pk=after).model_version == v2
    assert acme_api.get(f"/api/v1/tasks/{before}").body["model_version"] == "v1"


def test_name_at_version_pins_a_version_that_is_not_current(acme_api, v1, v2):
    catalog.make_version_current(v2)

    created = submit(acme_api, "roll@v1")

    assert created.status == 201, created.body
    assert created.body["model_version"] == "v1"
    execute_task(created.body["id"])
    task = Task.objects.get(pk=created.body["id"])
    assert task.state == TaskState.SUCCEEDED
    assert payloads.read_output(task) == "hello versions"


def test_an_unknown_version_is_refused_like_an_unknown_model(acme_api, v1):
    unknown_version = submit(acme_api, "roll@v9")
    unknown_model = submit(acme_api, "nope@v1")

    assert unknown_version.status == unknown_model.status == 400
    for body, spec in ((unknown_version.body, "roll@v9"), (unknown_model.body, "nope@v1")):
        assert body == {
            "error": {
                "type": "invalid_request_error",
                "code": "model_not_found",
                "message": f"model {spec!r} does not exist or is not available",
                "param": "model",
            }
        }
    assert not Task.objects.exists()


def test_a_model_without_versions_works_as_before(acme_api):
    created = submit(acme_api, "echo")

    assert created.status == 201, created.body
    assert created.body["model_version"] is None
    execute_task(created.body["id"])
    assert Task.objects.get(pk=created.body["id"]).state == TaskState.SUCCEEDED


def test_the_tenant_model_list_names_the_versions(acme_api, v1, v2):
    listed = {m["id"]: m for m in acme_api.get("/api/v1/models").body["data"]}

    assert listed["roll"]["current_version"] == "v1"
    assert listed["roll"]["versions"] == ["v1", "v2"]
    assert listed["echo"]["current_version"] is None and listed["echo"]["versions"] == []


def test_a_duplicate_label_or_a_non_local_artifact_is_refused(roll, v1, tmp_path):
    with pytest.raises(catalog.VersionError, match="already exists"):
        catalog.create_version(roll, "v1", artifact(tmp_path, "again"))
    with pytest.raises(catalog.VersionError, match="never download"):
        catalog.create_version(roll, "v3", "https://example.com/weights.bin")
    with pytest.raises(catalog.VersionError, match="does not exist"):
        catalog.create_version(roll, "v3", str(tmp_path / "missing"))
    assert list(roll.versions.values_list("version", flat=True)) == ["v1"]


# --- The version's artifact reaches the adapter ----------------------------------------------


@pytest.fixture
def tiny_without_path(db) -> LLMModel:
    """A transformers model whose own config has no path: only a version can supply one."""
    return LLMModel.objects.create(name="tiny-versioned", adapter="transformers", is_public=True)


def test_the_version_artifact_becomes_the_adapter_path(acme_api, tiny_without_path, tiny_model_path):
    catalog.create_version(tiny_without_path, "v1", f"file://{tiny_model_path}", make_current=True)

    created = submit(acme_api, "tiny-versioned", "hello")
    execute_task(created.body["id"])

    task = Task.objects.get(pk=created.body["id"])
    assert task.state == TaskState.SUCCEEDED, task.error_message
    assert task.usage["completion_tokens"] >= 1


def test_a_path_in_the_version_overrides_wins_over_the_artifact(acme_api, tiny_without_path, tiny_model_path, tmp_path):
    catalog.create_version(
        tiny_without_path, "v1", tiny_model_path, adapter_config={"path": str(tmp_path / "elsewhere")},
        device="cpu", make_current=True,
    )

    created = submit(acme_api, "tiny-versioned", "hello")
    execute_task(created.body["id"])

    task = Task.objects.get(pk=created.body["id"])
    assert task.state == TaskState.FAILED
    assert task.error_code == "model_unavailable"
    assert "elsewhere" in task.error_message


def test_the_current_version_cannot_be_deleted_alone_but_goes_with_its_model(roll, v1, v2):
    from django.db.models import RestrictedError

    with pytest.raises(RestrictedError):
        v1.delete()
    v2.delete()  # not current, no tasks: fine

    roll.delete()

    assert not ModelVersion.objects.exists()
