"""LOG_FORMAT=json: every line is one JSON object (for log shippers), and no line
holds an API key or what a tenant wrote, through a task's whole life."""

from __future__ import annotations

import json
import uuid

import pytest

from apps.runtime.execution import execute_task
from tests.integration.log_support import asgi_request, captured_log
from tests.integration.manage_cli import base_env, describe, shell
from tests.integration.stream_support import read_to_end

PROMPT = "my very private prompt about the merger"


def test_the_setting_makes_every_process_write_json_lines(tmp_path):
    code = "import logging; logging.getLogger('apps.probe').warning('hello %s', 'shipper')"
    result = shell(code, env=base_env(tmp_path, LOG_FORMAT="json"))

    assert result.returncode == 0, describe(result)
    # Lines before logging is configured (the local secrets' notices) are plain prints.
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [record] = [record for record in records if record["logger"] == "apps.probe"]
    assert (record["level"], record["message"], record["process"]) == ("WARNING", "hello shipper", "shell")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the ASGI app reads from other threads
def test_a_task_s_lines_parse_and_hold_neither_key_nor_prompt(acme_key, dispatcher):
    headers = {"Authorization": f"Bearer {acme_key}", "Content-Type": "application/json"}
    with captured_log("json") as log:
        created = asgi_request(
            "POST", "/api/v1/tasks", headers, body=json.dumps({"model": "echo", "prompt": PROMPT}).encode()
        )
        assert created.status == 201, created.body
        task_id = json.loads(created.body)["id"]
        assert dispatcher.run_once() == 1
        execute_task(uuid.UUID(task_id))
        streamed = read_to_end(task_id, key=acme_key)

    assert PROMPT in "".join(message.get("text", "") for message in streamed)  # the echo model said it back
    records = log.records()  # each line parses
    assert {"apps.scheduler.dispatcher", "apps.runtime.execution", "llmagentos.access"} <= {
        record["logger"] for record in records
    }
    assert PROMPT not in log.text() and "private prompt" not in log.text()
    assert acme_key not in log.text()
