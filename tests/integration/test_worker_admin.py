"""Operators see the fleet in the admin and drain/undrain workers with its actions."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from apps.workers import services
from apps.workers.models import Worker, WorkerState

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/workers/worker/"
GIB = 1024**3


@pytest.fixture
def operator(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("operator", email="", password=None))
    return client


def _register(name: str, **device) -> Worker:
    return services.register_worker(
        name=name, host="gpu-host", pid=os.getpid(), slots=4,
        device_info={"gpus": [], "cpu_count": 8, "ram_total": 64 * GIB, "ram_available": 32 * GIB, **device},
    )


def _action(client: Client, action: str, *workers: Worker):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [str(w.pk) for w in workers]})


def test_the_list_shows_state_lost_flag_slots_and_gpus(operator):
    _register("gpu-1", gpus=[{"index": 0, "name": "NVIDIA H100", "memory_total": 80 * GIB,
                              "memory_free": 60 * GIB, "utilization": 37}])
    silent = _register("gpu-2")
    Worker.objects.filter(pk=silent.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(seconds=settings.WORKER_LOST_SECONDS + 1)
    )

    page = operator.get(CHANGELIST).content.decode()

    assert "#0 NVIDIA H100, 60.0/80.0 GiB free, 37% busy" in page
    assert page.count('alt="True"') == 1  # the lost flag: gpu-2 only
    assert sorted(re.findall(r'<td class="field-status">(\w+)</td>', page)) == ["active", "lost"]


def test_the_drain_and_undrain_actions_change_the_state(operator):
    first, second = _register("gpu-1"), _register("gpu-2")

    assert _action(operator, "drain_workers", first, second).status_code == 302
    assert set(Worker.objects.values_list("state", flat=True)) == {WorkerState.DRAINING}

    _action(operator, "undrain_workers", first)
    assert dict(Worker.objects.values_list("name", "state")) == {"gpu-1": "active", "gpu-2": "draining"}


def test_a_workers_page_is_read_only(operator):
    worker = _register("gpu-1")
    page = f"{CHANGELIST}{worker.pk}/change/"

    assert operator.get(page).status_code == 200
    assert operator.post(page, {"name": "renamed", "state": "stopped"}).status_code == 403
    worker.refresh_from_db()
    assert (worker.name, worker.state) == ("gpu-1", WorkerState.ACTIVE)
    assert operator.get(f"{CHANGELIST}add/").status_code == 403
    assert operator.get(f"{CHANGELIST}{worker.pk}/delete/").status_code == 403
