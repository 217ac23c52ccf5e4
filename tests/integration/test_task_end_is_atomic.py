"""A task's end commits with its ``ending`` effects (apps.tasks.lifecycle): the charge's
settlement and the webhook's Delivery row are written in the transaction that writes the
end, on every path that ends a task. Shown for the two paths that end a task without its
worker: a tenant cancelling a queued task, and the lease reaper failing a task whose last
attempt's worker was lost. An ``ending`` effect that fails rolls the end back (the task
keeps its previous state, nothing is settled or owed); otherwise the end, the settlement
and the Delivery come together."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.tasks import lifecycle, services
from apps.tasks.models import Task, TaskState
from apps.tenants.models import TaskCharge
from apps.webhooks.models import Delivery
from tests.integration.webhook_support import SETTINGS

pytestmark = pytest.mark.django_db


class EndingRefused(Exception):
    """What the failing ``ending`` effect raises."""


def _refuse(task_id: uuid.UUID, usage: object = None) -> None:
    raise EndingRefused(str(task_id))


@pytest.fixture
def failing_ending_effect() -> Iterator[None]:
    """An ``ending`` effect that fails, after the platform's own (settle, webhook delivery)."""
    lifecycle.ending.register("test.refuse", _refuse)
    yield
    lifecycle.ending.unregister("test.refuse")


@pytest.fixture
def webhook_tenant_api(acme_api):
    """acme, with a tenant-wide callback URL: every end of its tasks owes a delivery."""
    assert acme_api.patch(SETTINGS, {"url": "http://127.0.0.1:9/task-ended"}).status == 200
    return acme_api


def _queued(api) -> Task:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "an end with a callback"})
    assert created.status == 201, created.body
    return Task.objects.select_related("tenant").get(pk=created.body["id"])


def _cancel(task: Task) -> None:
    services.cancel_task(task)


def _reap_last_attempt(task: Task) -> None:
    """Its worker took it on the last allowed attempt and died: the reaper fails it."""
    claimed = services.claim_task(task.pk, "worker-that-dies")
    assert claimed is not None
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.reap_expired_leases()


ENDINGS: dict[str, tuple[Callable[[Task], None], TaskState, TaskState]] = {
    # path: (how it ends, the state before, the state after)
    "cancel-queued": (_cancel, TaskState.QUEUED, TaskState.CANCELLED),
    "reaper-worker-lost": (_reap_last_attempt, TaskState.RUNNING, TaskState.FAILED),
}


@pytest.fixture(params=sorted(ENDINGS))
def ending(request, settings) -> tuple[Callable[[Task], None], TaskState, TaskState]:
    settings.TASK_MAX_ATTEMPTS = 1  # the reaper's first lost attempt is the last
    return ENDINGS[request.param]


def _settled(task: Task) -> bool:
    return TaskCharge.objects.get(task_id=task.pk).settled_at is not None


def test_a_failing_ending_effect_rolls_the_end_back(webhook_tenant_api, ending, failing_ending_effect):
    end, before, _ = ending
    task = _queued(webhook_tenant_api)

    with pytest.raises(EndingRefused):
        end(task)

    task.refresh_from_db()
    assert task.state == before and task.finished_at is None
    assert not _settled(task)
    assert not Delivery.objects.filter(task_id=task.pk).exists()


def test_the_end_is_written_with_its_settlement_and_delivery(webhook_tenant_api, ending):
    end, _, after = ending
    task = _queued(webhook_tenant_api)

    end(task)

    task.refresh_from_db()
    assert task.state == after and task.finished_at is not None
    assert _settled(task)
    assert Delivery.objects.filter(task_id=task.pk).count() == 1
