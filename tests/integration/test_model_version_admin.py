"""Versions in the admin: added inline (needs asked of the adapter), made current with an
action, and a version no worker can host shown in the lists with a warning."""

from __future__ import annotations

import os

import pytest
from django.test import Client

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel, ModelVersion
from apps.scheduler.placement import GIB
from apps.workers import services as worker_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("operator", email="", password=None)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def roll(db) -> LLMModel:
    return LLMModel.objects.create(name="roll", adapter="echo", is_public=True)


def change_form(model: LLMModel, **changes) -> dict:
    data = {
        "name": model.name, "description": model.description, "adapter": model.adapter,
        "adapter_config": "{}", "enabled": "on", "is_public": "on",
        "current_version": str(model.current_version_id or ""),
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return data


def test_a_version_added_inline_gets_its_needs_from_the_adapter(operator, roll, tmp_path):
    response = operator.post(
        f"/admin/catalog/llmmodel/{roll.pk}/change/",
        change_form(roll, **{
            "versions-TOTAL_FORMS": "1",
            "versions-0-model": str(roll.pk), "versions-0-version": "v1",
            "versions-0-artifact_uri": str(tmp_path), "versions-0-adapter_config": "{}",
            "versions-0-sha256": "", "versions-0-size_bytes": "", "versions-0-device": "",
            "versions-0-gpu_memory_bytes": "",
        }),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    version = ModelVersion.objects.get(model=roll)
    assert (version.version, version.device, version.gpu_memory_bytes) == ("v1", "cpu", 0)


def test_the_alias_can_only_name_the_models_own_version(operator, roll, tmp_path):
    other = LLMModel.objects.create(name="other", adapter="echo")
    (tmp_path / "o").mkdir()
    foreign = catalog.create_version(other, "v1", str(tmp_path / "o"))

    response = operator.post(f"/admin/catalog/llmmodel/{roll.pk}/change/",
                             change_form(roll, current_version=str(foreign.pk)))

    assert response.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in response.content.decode()
    roll.refresh_from_db()
    assert roll.current_version is None


def test_make_current_moves_the_alias(operator, roll, tmp_path):
    for label in ("v1", "v2"):
        (tmp_path / label).mkdir()
        catalog.create_version(roll, label, str(tmp_path / label), make_current=label == "v1")
    v2 = ModelVersion.objects.get(version="v2")

    response = operator.post(
        "/admin/catalog/modelversion/", {"action": "make_current", "_selected_action": [str(v2.pk)]}, follow=True
    )

    assert response.status_code == 200
    assert "Current now: roll@v2." in response.content.decode()
    roll.refresh_from_db()
    assert roll.current_version == v2


def test_an_unplaceable_version_is_shown_and_warned_about(operator, tmp_path):
    big = LLMModel.objects.create(name="big", adapter="echo")
    (tmp_path / "big").mkdir()
    catalog.create_version(big, "v1", str(tmp_path / "big"), device="gpu", gpu_memory_bytes=100 * GIB,
                           make_current=True)
    worker_services.register_worker(
        name="gpu-a", host="h", pid=os.getpid(), slots=1, model_names=None,
        device_info={"gpus": [{"index": 0, "name": "L4", "memory_total": 24 * GIB, "memory_free": 24 * GIB,
                               "utilization": 0}], "cpu_count": 8, "ram_total": None, "ram_available": None},
    )

    for page in ("/admin/catalog/llmmodel/", "/admin/catalog/modelversion/"):
        text = operator.get(page).content.decode()
        assert "No worker can host big@v1: needs 100.0 GiB" in text  # the warning on top
    assert "v1: needs 100.0 GiB" in operator.get("/admin/catalog/llmmodel/").content.decode()  # the column
