"""A running generation the scheduler asks to suspend gives its slot back at a token
boundary and is queued again with its progress; the next claim resumes the same
attempt where it stopped. Its output equals the uninterrupted one, it is charged
its tokens once, and its stream counts seq on with no chunk lost or repeated,
a ``suspended`` and a ``resumed`` message around the gap (also for a reader
that reconnects with ``?after=N`` in the middle of it).

The worker is ``execute_task`` in a thread with a keeper of its own (renewing
once an hour: the suspension reaches it through the wake-up), on echo at 20
words a second. Runs on both backends.
"""

from __future__ import annotations

import uuid

import pytest

from apps.runtime.leases import LeaseKeeper
from apps.tasks import services, suspension
from apps.tasks.models import Task, TaskState
from apps.tenants.models import BudgetLedger
from tests.integration.stream_support import chunks, read_to_end
from tests.integration.suspension_support import SLOW_ECHO, WORDS, WorkerThread, slow_echo, streamed_some, wait_until

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

WORD_COUNT = len(WORDS.split())


def _submit(api, **extra) -> uuid.UUID:
    created = api.post("/api/v1/tasks", {"model": SLOW_ECHO, "prompt": WORDS, "max_tokens": 100, **extra})
    assert created.status == 201, created.body
    return uuid.UUID(created.body["id"])


def _suspend_mid_way(task_id: uuid.UUID, keeper: LeaseKeeper) -> Task:
    worker = WorkerThread(task_id, keeper)
    wait_until(streamed_some(task_id), "the task streamed a few words")
    assert suspension.request_suspend([task_id]) == [task_id]
    worker.join()
    return Task.objects.get(pk=task_id)


def test_a_suspended_task_is_queued_again_with_its_progress_on_the_same_attempt(acme_api, keeper):
    slow_echo()
    task_id = _submit(acme_api)

    task = _suspend_mid_way(task_id, keeper)

    assert task.state == TaskState.QUEUED and task.dispatched_at is None and task.worker_name == ""
    assert (task.attempt, task.preemptions, task.slices, task.suspend_requested) == (1, 1, 0, False)
    assert 3 <= task.progress_tokens < WORD_COUNT
    progress = suspension.read_progress(task)
    assert progress is not None and WORDS.startswith(progress.text) and progress.text
    assert progress.first_token_at is not None
    # What the model generated is stored only encrypted.
    assert progress.text.encode() not in bytes(task.progress_ciphertext)


def test_the_resumed_task_ends_with_the_uninterrupted_output_and_usage_charged_once(acme, acme_api, keeper):
    slow_echo()
    task_id = _submit(acme_api)
    _suspend_mid_way(task_id, keeper)

    WorkerThread(task_id, keeper).join()

    task = Task.objects.get(pk=task_id)
    body = acme_api.get(f"/api/v1/tasks/{task_id}").body
    assert (body["status"], body["output"]) == ("succeeded", WORDS)
    assert body["usage"] == {"prompt_tokens": WORD_COUNT, "completion_tokens": WORD_COUNT,
                             "total_tokens": 2 * WORD_COUNT}
    assert task.attempt == 1 and task.progress_ciphertext is None
    ledger = BudgetLedger.objects.get(tenant=acme)
    assert (ledger.spent_tokens, ledger.reserved_tokens) == (2 * WORD_COUNT, 0)


def test_the_stream_counts_on_across_the_suspension_with_nothing_lost_or_repeated(acme_api, acme_key, keeper):
    slow_echo()
    task_id = _submit(acme_api)
    _suspend_mid_way(task_id, keeper)
    WorkerThread(task_id, keeper).join()

    messages = read_to_end(task_id, key=acme_key)

    kinds = [message["type"] for message in messages]
    assert "restart" not in kinds
    assert kinds.count("suspended") == 1 and kinds.count("resumed") == 1
    suspended_at, resumed_at = kinds.index("suspended"), kinds.index("resumed")
    assert suspended_at < resumed_at and messages[suspended_at] == {"type": "suspended", "reason": "preempted"}
    every = chunks(messages)
    assert [chunk["seq"] for chunk in every] == list(range(1, len(every) + 1))
    assert "".join(chunk["text"] for chunk in every) == WORDS
    assert messages[-1]["type"] == "done" and messages[-1]["status"] == "succeeded"

    # A reader that saw every chunk before the suspension reconnects: it gets the rest, once.
    seen = chunks(messages[:suspended_at])[-1]["seq"]
    rest = read_to_end(task_id, key=acme_key, after=seen)
    assert chunks(rest) == every[seen:]
    assert [message["type"] for message in rest if message["type"] != "chunk"] == ["suspended", "resumed", "done"]


def test_a_task_suspended_twice_still_ends_with_its_whole_output(acme_api, keeper):
    slow_echo()
    task_id = _submit(acme_api)
    _suspend_mid_way(task_id, keeper)
    second = _suspend_mid_way(task_id, keeper)
    assert second.preemptions == 2 and second.attempt == 1

    WorkerThread(task_id, keeper).join()

    assert acme_api.get(f"/api/v1/tasks/{task_id}").body["output"] == WORDS


def test_a_suspended_task_cancelled_while_it_waits_ends_cancelled_without_its_progress(acme_api, keeper):
    slow_echo()
    task_id = _submit(acme_api)
    task = _suspend_mid_way(task_id, keeper)

    services.cancel_task(task)

    task.refresh_from_db()
    assert task.state == TaskState.CANCELLED and task.progress_ciphertext is None


def test_a_retry_after_a_suspension_starts_over_on_a_new_attempt(acme_api, acme_key, keeper):
    slow_echo()
    task_id = _submit(acme_api)
    _suspend_mid_way(task_id, keeper)
    # The resumed attempt's worker dies: the reaper's retry drops the progress.
    assert services.claim_for_dispatch(task_id)
    resumed = services.claim_task(task_id, "worker-that-dies")
    assert resumed is not None and resumed.attempt == 1
    Task.objects.filter(pk=task_id).update(lease_expires_at=resumed.started_at)
    requeued, _ = services.reap_expired_leases()
    assert [task.pk for task in requeued] == [task_id]
    assert Task.objects.get(pk=task_id).progress_ciphertext is None

    WorkerThread(task_id, keeper).join()

    task = Task.objects.get(pk=task_id)
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 2)
    assert acme_api.get(f"/api/v1/tasks/{task_id}").body["output"] == WORDS
    messages = read_to_end(task_id, key=acme_key)
    assert {"type": "restart", "attempt": 2} in messages


def test_a_queue_message_from_before_the_suspension_cannot_resume_it(acme_api, keeper):
    """Only the dispatcher's new hand-out resumes a suspended task: a message left on the
    queue from before (a duplicate) would take a slot out of the policy's order."""
    slow_echo()
    task_id = _submit(acme_api)
    _suspend_mid_way(task_id, keeper)

    assert services.claim_task(task_id, "worker-with-a-stale-message") is None
    assert Task.objects.get(pk=task_id).state == TaskState.QUEUED

    assert services.claim_for_dispatch(task_id)  # the dispatcher hands it out again
    resumed = services.claim_task(task_id, "worker-b")
    assert resumed is not None and resumed.attempt == 1
