"""Queued tasks show their queue position and an estimated start from measured service times."""

from __future__ import annotations

import pytest

from apps.catalog.models import LLMModel
from apps.scheduler.estimates import QueueStats, queue_stats
from tests.integration.queue_support import busy_two_slot_queue


def test_start_after_follows_littles_law():
    stats = QueueStats(queued=10, running=4, slots=4, mean_service_seconds=2.0)
    assert stats.start_after(1) == 0.5  # one completion of four busy slots: 2 s / 4
    assert stats.start_after(4) == 2.0
    assert QueueStats(queued=1, running=1, slots=4, mean_service_seconds=2.0).start_after(1) == 0.0  # a free slot
    assert QueueStats(queued=1, running=0, slots=0, mean_service_seconds=2.0).start_after(1) is None  # nobody serves
    assert QueueStats(queued=1, running=0, slots=2, mean_service_seconds=None).start_after(1) is None  # no history


@pytest.mark.django_db
def test_queued_task_reports_position_and_estimate(acme_api):
    echo = LLMModel.objects.get(name="echo")
    # History: two finished tasks that each ran 3 s; two tasks occupy both slots.
    ids = busy_two_slot_queue(acme_api, "echo")

    assert queue_stats(echo) == QueueStats(queued=2, running=2, slots=2, mean_service_seconds=3.0)
    first, second = (acme_api.get(f"/api/v1/tasks/{i}").body for i in ids[4:])
    assert (first["queue_position"], first["estimated_start_seconds"]) == (1, 1.5)
    assert (second["queue_position"], second["estimated_start_seconds"]) == (2, 3.0)
    finished = acme_api.get(f"/api/v1/tasks/{ids[0]}").body
    assert finished["queue_position"] is None and finished["estimated_start_seconds"] is None


@pytest.mark.django_db
def test_interactive_tasks_are_ahead_of_normal_ones(acme_api):
    normal = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "n"}).body["id"]
    urgent = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "u", "priority": "interactive"}).body["id"]
    assert acme_api.get(f"/api/v1/tasks/{urgent}").body["queue_position"] == 1
    assert acme_api.get(f"/api/v1/tasks/{normal}").body["queue_position"] == 2
