"""A task.ended event carries the task's output only when the task asked for it
(webhook_include_output: true); otherwise only the summary."""

from __future__ import annotations

import pytest

from tests.integration.webhook_support import end_task, send_until_settled
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db


def test_no_output_unless_asked(acme_api):
    with WebhookReceiver() as receiver:
        end_task(acme_api, webhook_url=receiver.url)
        send_until_settled()

    (request,) = receiver.received
    assert "output" not in request.json["task"]
    assert b"one two three" not in request.body


def test_the_output_when_asked(acme_api):
    with WebhookReceiver() as receiver:
        task = end_task(acme_api, webhook_url=receiver.url, webhook_include_output=True)
        send_until_settled()

    (request,) = receiver.received
    assert request.json["task"]["output"] == task["output"]
    assert "one two three" in request.json["task"]["output"]
