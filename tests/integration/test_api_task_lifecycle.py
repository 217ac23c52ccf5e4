"""A task through the REST API: listed, filtered, cancelled, run, erased.

Tasks run through ``execute_task``, the real worker code path (the Huey job
calls exactly this with the task id).
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from apps.runtime.execution import execute_task
from apps.tasks.models import Task
from apps.tasks.services import claim_task

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
USAGE_KEYS = {"prompt_tokens", "completion_tokens", "total_tokens"}


def _submit(api, prompt="one two three", **extra) -> dict:
    created = api.post(TASKS, {"model": "echo", "prompt": prompt, **extra})
    assert created.status == 201, created.body
    return created.body


def _run(task_id: str) -> None:
    execute_task(uuid.UUID(task_id))


def _assert_invalid(response, param, code=None):
    assert response.status == 400, response.body
    error = response.body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error


def _follow(api, url: str):
    parts = urlsplit(url)
    return api.get(f"{parts.path}?{parts.query}")


# --- listing and pagination -----------------------------------------------------------------


def test_list_is_newest_first_and_shows_no_input_or_output(acme_api):
    ids = [_submit(acme_api, f"task {i}")["id"] for i in range(3)]
    listed = acme_api.get(TASKS)
    assert listed.status == 200, listed.body
    assert [t["id"] for t in listed.body["results"]] == ids[::-1]
    assert listed.body["next"] is None
    for summary in listed.body["results"]:
        assert summary["status"] == "queued"
        assert "input" not in summary and "output" not in summary


def test_empty_list(acme_api):
    listed = acme_api.get(TASKS)
    assert listed.status == 200
    assert listed.body["results"] == []
    assert listed.body["next"] is None


def test_cursor_pagination_walks_every_task_once(acme_api):
    ids = [_submit(acme_api, f"task {i}")["id"] for i in range(5)]
    expected = ids[::-1]

    first = acme_api.get(TASKS, {"page_size": 2})
    assert first.status == 200, first.body
    assert [t["id"] for t in first.body["results"]] == expected[:2]
    assert first.body["next"]
    assert parse_qs(urlsplit(first.body["next"]).query)["page_size"] == ["2"]

    second = _follow(acme_api, first.body["next"])
    assert second.status == 200, second.body
    assert [t["id"] for t in second.body["results"]] == expected[2:4]

    third = _follow(acme_api, second.body["next"])
    assert third.status == 200, third.body
    assert [t["id"] for t in third.body["results"]] == expected[4:]
    assert third.body["next"] is None

    # And back.
    assert third.body["previous"]
    back = _follow(acme_api, third.body["previous"])
    assert [t["id"] for t in back.body["results"]] == expected[2:4]


def test_cursor_keeps_its_filter(acme_api):
    ids = [_submit(acme_api, f"t{i}", client_ref="batch-7")["id"] for i in range(3)]
    _submit(acme_api, "other", client_ref="batch-8")
    first = acme_api.get(TASKS, {"client_ref": "batch-7", "page_size": 2})
    assert [t["id"] for t in first.body["results"]] == ids[::-1][:2]
    second = _follow(acme_api, first.body["next"])
    assert [t["id"] for t in second.body["results"]] == ids[::-1][2:]
    assert second.body["next"] is None


# Not base64; "p=2024"; "o=1&r=1&p=1"; "o=x": well-formed base64 that is not a usable cursor.
@pytest.mark.parametrize("cursor", ["garbage", "cD0yMDI0", "bz0xJnI9MSZwPTE=", "bz14"])
def test_invalid_cursor(acme_api, cursor):
    _submit(acme_api)
    _assert_invalid(acme_api.get(TASKS, {"cursor": cursor}), "cursor", "invalid_cursor")


@pytest.mark.parametrize(("page_size", "code"), [("0", "min_value"), ("201", "max_value"), ("many", "invalid")])
def test_invalid_page_size(acme_api, page_size, code):
    _assert_invalid(acme_api.get(TASKS, {"page_size": page_size}), "page_size", code)


def test_unknown_query_parameter(acme_api):
    _assert_invalid(acme_api.get(TASKS, {"state": "queued"}), "state", "unknown_field")


# --- filters ------------------------------------------------------------------------------------


def test_status_filter(acme_api):
    queued = _submit(acme_api, "a")["id"]
    cancelled = _submit(acme_api, "b")["id"]
    succeeded = _submit(acme_api, "c")["id"]
    assert acme_api.post(f"{TASKS}/{cancelled}/cancel").status == 200
    _run(succeeded)

    def ids(status):
        response = acme_api.get(TASKS, {"status": status})
        assert response.status == 200, response.body
        return [t["id"] for t in response.body["results"]]

    assert ids("queued") == [queued]
    assert ids("cancelled") == [cancelled]
    assert ids("succeeded") == [succeeded]
    assert ids("running") == []
    assert ids("failed") == []


@pytest.mark.parametrize("status", ["done", "QUEUED", "complete", ""])
def test_invalid_status_filter(acme_api, status):
    _assert_invalid(acme_api.get(TASKS, {"status": status}), "status")


def test_client_ref_filter(acme_api):
    first = _submit(acme_api, "a", client_ref="order-1")["id"]
    second = _submit(acme_api, "b", client_ref="order-2")["id"]
    third = _submit(acme_api, "c", client_ref="order-1")["id"]
    _submit(acme_api, "d")

    def ids(**params):
        response = acme_api.get(TASKS, params)
        assert response.status == 200, response.body
        return [t["id"] for t in response.body["results"]]

    assert ids(client_ref="order-1") == [third, first]
    assert ids(client_ref="order-2") == [second]
    assert ids(client_ref="order-3") == []
    assert ids(client_ref="ORDER-1") == []  # exact match
    assert ids(client_ref="order-1", status="queued") == [third, first]
    assert ids(client_ref="order-1", status="cancelled") == []


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_a_queued_task_and_cancel_again(acme_api):
    task_id = _submit(acme_api)["id"]
    cancelled = acme_api.post(f"{TASKS}/{task_id}/cancel")
    assert cancelled.status == 200, cancelled.body
    assert cancelled.body["id"] == task_id
    assert cancelled.body["status"] == "cancelled"
    assert cancelled.body["error"]["code"] == "cancelled"
    assert cancelled.body["finished_at"] is not None

    again = acme_api.post(f"{TASKS}/{task_id}/cancel")
    assert again.status == 200, again.body
    assert again.body["status"] == "cancelled"
    assert again.body["finished_at"] == cancelled.body["finished_at"]

    # A worker that gets the message later does nothing.
    _run(task_id)
    shown = acme_api.get(f"{TASKS}/{task_id}").body
    assert shown["status"] == "cancelled"
    assert shown["output"] is None
    assert shown["usage"] is None
    assert shown["attempt"] == 0


def test_cancel_a_finished_task_changes_nothing(acme_api):
    task_id = _submit(acme_api, "done already")["id"]
    _run(task_id)
    response = acme_api.post(f"{TASKS}/{task_id}/cancel")
    assert response.status == 200, response.body
    assert response.body["status"] == "succeeded"
    assert response.body["error"] is None
    assert acme_api.get(f"{TASKS}/{task_id}").body["output"] == "done already"


def test_cancel_a_running_task_asks_the_worker(acme_api):
    task_id = _submit(acme_api)["id"]
    assert claim_task(uuid.UUID(task_id), "test-worker") is not None
    response = acme_api.post(f"{TASKS}/{task_id}/cancel")
    assert response.status == 200, response.body
    assert response.body["status"] == "running"
    assert response.body["cancel_requested"] is True


# --- erase --------------------------------------------------------------------------------------


def test_delete_erases_a_queued_task(acme_api):
    task_id = _submit(acme_api, "forget me", metadata={"k": "v"}, client_ref="erase-1")["id"]
    deleted = acme_api.delete(f"{TASKS}/{task_id}")
    assert deleted.status == 204
    assert not deleted.body

    shown = acme_api.get(f"{TASKS}/{task_id}")
    assert shown.status == 200, shown.body
    assert shown.body["erased"] is True
    assert shown.body["input"] is None
    assert shown.body["output"] is None
    assert shown.body["metadata"] == {}
    assert shown.body["client_ref"] is None
    assert shown.body["status"] == "cancelled"
    # The reference is gone too.
    assert acme_api.get(TASKS, {"client_ref": "erase-1"}).body["results"] == []
    # Not run afterwards.
    _run(task_id)
    assert Task.objects.get(pk=task_id).output_ciphertext is None


def test_delete_erases_a_finished_tasks_output_and_keeps_usage(acme_api):
    task_id = _submit(acme_api, "secret words here", metadata={"k": "v"})["id"]
    _run(task_id)
    before = acme_api.get(f"{TASKS}/{task_id}").body
    assert before["output"] == "secret words here"

    assert acme_api.delete(f"{TASKS}/{task_id}").status == 204
    shown = acme_api.get(f"{TASKS}/{task_id}").body
    assert shown["erased"] is True
    assert shown["input"] is None
    assert shown["output"] is None
    assert shown["metadata"] == {}
    assert shown["status"] == "succeeded"
    assert shown["usage"] == before["usage"]  # the accounting row stays
    task = Task.objects.get(pk=task_id)
    assert task.input_ciphertext is None and task.output_ciphertext is None and task.meta_ciphertext is None


def test_delete_twice(acme_api):
    task_id = _submit(acme_api)["id"]
    assert acme_api.delete(f"{TASKS}/{task_id}").status == 204
    assert acme_api.delete(f"{TASKS}/{task_id}").status == 204
    assert acme_api.get(f"{TASKS}/{task_id}").body["erased"] is True


# --- output and usage ---------------------------------------------------------------------------


def test_output_appears_only_once_the_task_finished(acme_api):
    created = _submit(acme_api, "one two three")
    assert created["output"] is None
    assert created["usage"] is None
    task_id = created["id"]

    queued = acme_api.get(f"{TASKS}/{task_id}").body
    assert queued["status"] == "queued"
    assert queued["output"] is None
    assert queued["usage"] is None
    assert queued["started_at"] is None and queued["finished_at"] is None

    _run(task_id)

    done = acme_api.get(f"{TASKS}/{task_id}")
    assert done.status == 200
    assert done.body["status"] == "succeeded"
    assert done.body["output"] == "one two three"
    assert done.body["input"] == {"prompt": "one two three"}
    assert done.body["error"] is None
    assert done.body["attempt"] == 1
    assert done.body["started_at"] is not None and done.body["finished_at"] is not None
    assert set(done.body["usage"]) == USAGE_KEYS
    assert done.body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


def test_output_is_hidden_while_running(acme_api):
    task_id = _submit(acme_api)["id"]
    assert claim_task(uuid.UUID(task_id), "test-worker") is not None
    running = acme_api.get(f"{TASKS}/{task_id}").body
    assert running["status"] == "running"
    assert running["output"] is None
    assert running["usage"] is None


def test_usage_counts_the_generated_tokens(acme_api):
    task_id = _submit(acme_api, "alpha beta gamma delta epsilon", max_tokens=2)["id"]
    _run(task_id)
    done = acme_api.get(f"{TASKS}/{task_id}").body
    assert done["status"] == "succeeded"
    assert done["output"] == "alpha beta "
    assert done["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    # The list shows usage too (but not the output).
    summary = acme_api.get(TASKS).body["results"][0]
    assert summary["id"] == task_id
    assert summary["usage"] == done["usage"]
    assert "output" not in summary


def test_chat_task_output_and_usage(acme_api):
    created = acme_api.post(TASKS, {
        "model": "echo",
        "messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello world"}],
    })
    assert created.status == 201, created.body
    _run(created.body["id"])
    done = acme_api.get(f"{TASKS}/{created.body['id']}").body
    assert done["status"] == "succeeded"
    assert done["output"] == "hello world"
    assert done["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
