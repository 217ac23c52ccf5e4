"""Operators drain and undrain workers over /api/v1/ops/; nobody else reaches it."""

from __future__ import annotations

import json
import os

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.catalog.models import LLMModel
from apps.workers import inventory, services
from apps.workers.models import Worker, WorkerState

pytestmark = pytest.mark.django_db

LIST = "/api/v1/ops/workers"


def _drain_url(worker: Worker) -> str:
    return f"/api/v1/ops/workers/{worker.id}/drain"


def _undrain_url(worker: Worker) -> str:
    return f"/api/v1/ops/workers/{worker.id}/undrain"


@pytest.fixture
def worker(db) -> Worker:
    return services.register_worker(
        name="gpu-1", host="gpu-host-1", pid=os.getpid(), slots=4, device_info=inventory.device_info()
    )


def _csrf_token(client: Client) -> str:
    """What a browser holds after loading an admin page: the CSRF cookie."""
    assert client.get("/admin/").status_code == 200
    return client.cookies["csrftoken"].value


def _post(client: Client, path: str, **headers):
    return client.post(path, content_type="application/json", headers=headers)


def _state(worker: Worker) -> str:
    worker.refresh_from_db()
    return worker.state


def _assert_refused(response, status: int) -> dict:
    assert response.status_code == status, response.content
    error = json.loads(response.content)["error"]
    assert set(error) == {"type", "code", "message", "param"}
    return error


# --- Staff ----------------------------------------------------------------------------------


def test_staff_list_the_workers_with_status_and_devices(staff_client, worker):
    response = staff_client.get(LIST)

    assert response.status_code == 200
    [listed] = response.json()["data"]
    assert listed["id"] == str(worker.id) and listed["name"] == "gpu-1"
    assert (listed["state"], listed["status"], listed["lost"]) == ("active", "active", False)
    assert listed["slots"] == 4 and listed["in_flight"] == 0
    assert listed["models"] == ["echo"]
    assert listed["cpu_count"] == os.cpu_count() and isinstance(listed["gpus"], list)


def test_staff_drain_and_undrain_a_worker(staff_client, worker):
    token = _csrf_token(staff_client)

    drained = _post(staff_client, _drain_url(worker), **{"X-CSRFToken": token})
    assert drained.status_code == 200, drained.content
    assert drained.json()["state"] == WorkerState.DRAINING == _state(worker)

    again = _post(staff_client, _drain_url(worker), **{"X-CSRFToken": token})
    assert again.status_code == 200 and again.json()["state"] == WorkerState.DRAINING

    undrained = _post(staff_client, _undrain_url(worker), **{"X-CSRFToken": token})
    assert undrained.status_code == 200
    assert undrained.json()["state"] == WorkerState.ACTIVE == _state(worker)


def test_a_drain_without_the_csrf_token_is_refused(staff_client, worker):
    _csrf_token(staff_client)

    error = _assert_refused(_post(staff_client, _drain_url(worker)), 403)

    assert "CSRF" in error["message"]
    assert _state(worker) == WorkerState.ACTIVE


def test_the_list_filtered_by_model_holds_the_workers_taking_its_tasks_now(staff_client, worker):
    LLMModel.objects.create(name="echo-slow", adapter="echo")
    services.register_worker(
        name="slow-only", host="gpu-host-2", pid=1, slots=1, device_info={}, model_names=["echo-slow"]
    )
    services.drain(services.register_worker(name="drained", host="gpu-host-3", pid=1, slots=1, device_info={}))

    response = staff_client.get(LIST, {"model": "echo"})

    assert [w["name"] for w in response.json()["data"]] == ["gpu-1"]
    assert _assert_refused(staff_client.get(LIST, {"model": "nope"}), 400)["param"] == "model"


def test_an_unknown_worker_is_a_404(staff_client, worker):
    token = _csrf_token(staff_client)
    missing = f"/api/v1/ops/workers/{'0' * 8}-0000-4000-8000-{'0' * 12}/drain"

    assert _assert_refused(_post(staff_client, missing, **{"X-CSRFToken": token}), 404)["code"] == "worker_not_found"


def test_a_stopped_worker_cannot_be_drained(staff_client, worker):
    token = _csrf_token(staff_client)
    services.mark_stopped(worker.id)

    error = _assert_refused(_post(staff_client, _drain_url(worker), **{"X-CSRFToken": token}), 409)

    assert error["code"] == "worker_stopped"
    assert _state(worker) == WorkerState.STOPPED


# --- Everyone else ----------------------------------------------------------------------------


def test_a_tenant_api_key_is_refused(acme_key, worker):
    tenant = Client(HTTP_AUTHORIZATION=f"Bearer {acme_key}")

    assert _assert_refused(tenant.get(LIST), 403)["code"] == "staff_only"
    assert _assert_refused(_post(tenant, _drain_url(worker)), 403)["code"] == "staff_only"
    assert _state(worker) == WorkerState.ACTIVE


def test_an_anonymous_caller_is_refused(outsider_api, worker):
    anonymous = Client()

    assert _assert_refused(anonymous.get(LIST), 403)["code"] == "not_authenticated"
    assert _assert_refused(_post(anonymous, _drain_url(worker)), 403)["code"] == "not_authenticated"
    assert _state(worker) == WorkerState.ACTIVE


def test_a_signed_in_user_who_is_not_staff_is_refused(worker):
    member = Client(enforce_csrf_checks=True)
    member.force_login(get_user_model().objects.create_user("member", password=None))

    assert _assert_refused(member.get(LIST), 403)["code"] == "staff_only"
    assert _state(worker) == WorkerState.ACTIVE
