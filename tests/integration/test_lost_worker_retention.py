"""A worker lost (or stopped) for longer than LOST_WORKER_RETENTION_SECONDS leaves the live
views — the admin's worker list by default, GET /api/v1/ops/workers without ``history`` —
and stays in history: the admin's "presence" filter and ``?history=true`` show it.
A worker lost for less time still shows, as lost."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.workers import inventory, services
from apps.workers.models import Worker

pytestmark = pytest.mark.django_db

RETENTION = 600


@pytest.fixture
def fleet(settings) -> dict[str, Worker]:
    """Alive, lost a minute ago, lost past the retention, stopped past the retention."""
    settings.LOST_WORKER_RETENTION_SECONDS = RETENTION
    workers = {
        name: services.register_worker(
            name=name, host=f"host-{name}", pid=os.getpid(), slots=2, device_info=inventory.device_info()
        )
        for name in ("alive", "lost-recently", "lost-long-ago", "stopped-long-ago")
    }
    services.mark_stopped(workers["stopped-long-ago"].id)
    for name, seconds in (("lost-recently", 60), ("lost-long-ago", RETENTION + 1), ("stopped-long-ago", RETENTION + 1)):
        Worker.objects.filter(name=name).update(last_heartbeat_at=timezone.now() - timedelta(seconds=seconds))
    return workers


def _listed(client, query: str = "") -> dict[str, str]:
    answer = client.get(f"/api/v1/ops/workers{query}")
    assert answer.status_code == 200, answer.content
    return {worker["name"]: worker["status"] for worker in answer.json()["data"]}


def test_the_ops_api_lists_live_and_recently_lost_workers_by_default(staff_client, fleet):
    assert _listed(staff_client) == {"alive": "active", "lost-recently": "lost"}
    assert _listed(staff_client, "?history=false") == {"alive": "active", "lost-recently": "lost"}


def test_history_shows_every_worker(staff_client, fleet):
    assert _listed(staff_client, "?history=true") == {
        "alive": "active", "lost-recently": "lost", "lost-long-ago": "lost", "stopped-long-ago": "stopped",
    }
    assert Worker.objects.count() == 4  # nothing was deleted


def test_a_malformed_history_flag_is_refused_naming_it(staff_client, fleet):
    answer = staff_client.get("/api/v1/ops/workers?history=maybe")
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "history"


def test_the_admin_list_shows_the_live_ones_unless_asked_for_history(staff_client, fleet):
    default = staff_client.get("/admin/workers/worker/")
    history = staff_client.get("/admin/workers/worker/?presence=history")

    assert default.status_code == history.status_code == 200
    shown = {name: name in default.content.decode() for name in fleet}
    assert shown == {"alive": True, "lost-recently": True, "lost-long-ago": False, "stopped-long-ago": False}
    assert all(name in history.content.decode() for name in fleet)
