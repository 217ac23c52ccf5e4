"""Every log line says when, how grave, which logger, which process, and the request
and task it belongs to (apps.core.logs); a request's id is bound for its whole handling."""

from __future__ import annotations

import logging
import os
import re

import pytest

from apps.core import logs
from tests.integration.log_support import asgi_request, captured_log

ISO_UTC_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_a_text_line_holds_time_level_logger_process_request_and_task():
    with captured_log("text") as log, logs.bound(request_id="req-fields-1", task_id="task-fields-1"):
        logging.getLogger("apps.probe").warning("something happened to %s", "it")

    pattern = (
        rf"{ISO_UTC_MS} WARNING apps\.probe \S+\[{os.getpid()}\] "
        r"request_id=req-fields-1 task_id=task-fields-1 something happened to it"
    )
    assert [line for line in log.lines() if re.fullmatch(pattern, line)], log.text()


def test_a_json_line_holds_the_same_fields():
    before = logs.process_name()
    logs.set_process_name("probe-process")
    try:
        with captured_log("json") as log, logs.bound(request_id="req-fields-2", task_id="task-fields-2"):
            logging.getLogger("apps.probe").error("failed: %d", 3)
    finally:
        logs.set_process_name(before)

    [record] = [record for record in log.records() if record["logger"] == "apps.probe"]
    assert re.fullmatch(ISO_UTC_MS, record.pop("time")), record
    assert record == {
        "level": "ERROR", "logger": "apps.probe", "process": "probe-process", "pid": os.getpid(),
        "request_id": "req-fields-2", "task_id": "task-fields-2", "message": "failed: 3",
    }


def test_fields_bound_outside_are_gone_after():
    with captured_log("json") as log:
        with logs.bound(request_id="req-fields-3"):
            pass
        logging.getLogger("apps.probe").warning("later")

    [record] = [record for record in log.records() if record["logger"] == "apps.probe"]
    assert "request_id" not in record and "task_id" not in record


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the ASGI app reads from other threads
def test_the_lines_of_a_request_carry_its_request_id(acme_key):
    # Django's own line about a 404 ("Not Found: …"): logged after the last middleware
    # has returned, so only a binding around the whole exchange gives it the id.
    with captured_log("json") as log:
        headers = {"Authorization": f"Bearer {acme_key}", "X-Request-ID": "req-fields-4"}
        answer = asgi_request("GET", "/api/v1/tasks/no-such-task", headers)

    assert answer.status == 404 and answer.headers["x-request-id"] == "req-fields-4"
    [record] = [record for record in log.records() if record["logger"] == "django.request"]
    assert record["request_id"] == "req-fields-4", record


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_request_without_an_acceptable_id_gets_a_new_one(acme_key):
    with captured_log("json") as log:
        headers = {"Authorization": f"Bearer {acme_key}", "X-Request-ID": "bad id with spaces"}
        answer = asgi_request("GET", "/api/v1/tasks/no-such-task", headers)

    minted = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted), minted
    assert {record.get("request_id") for record in log.records()} == {minted}
