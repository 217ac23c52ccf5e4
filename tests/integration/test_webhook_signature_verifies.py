"""When a task with a webhook_url ends, the platform POSTs a task.ended summary
signed with HMAC-SHA256 under the tenant's webhook secret: a receiver holding
that secret verifies it; one holding another (the tenant's old secret, another
tenant's) does not."""

from __future__ import annotations

import pytest

from tests.integration.webhook_support import end_task, secret_of, send_until_settled
from tests.stubs.webhook_receiver import WebhookReceiver, verify

pytestmark = pytest.mark.django_db


def test_the_signature_verifies_with_the_tenants_secret(acme_api, globex_api):
    old_secret = secret_of(acme_api)
    secret = secret_of(acme_api)  # replaced: the new one signs
    with WebhookReceiver() as receiver:
        task = end_task(acme_api, webhook_url=receiver.url)
        (delivery,) = send_until_settled()

    (request,) = receiver.received
    assert request.path == "/hooks/llm?token=receiver-token"
    assert verify(secret, request)
    assert not verify(old_secret, request)
    assert not verify(secret_of(globex_api), request)
    event = request.json
    assert event["event_id"] == request.event_id == str(delivery.pk)
    assert event["type"] == request.headers["x-llmagentos-event-type"] == "task.ended"
    assert event["task"]["id"] == task["id"]
    assert event["task"]["status"] == task["status"] == "succeeded"
    assert event["task"]["usage"] == task["usage"]
    assert event["task"]["model"] == "echo" and event["task"]["error"] is None
    assert event["task"]["finished_at"] and event["task"]["created_at"]


def test_a_tampered_body_does_not_verify(acme_api):
    secret = secret_of(acme_api)
    with WebhookReceiver() as receiver:
        end_task(acme_api, webhook_url=receiver.url)
        send_until_settled()

    (request,) = receiver.received
    tampered = type(request)(request.path, request.headers, request.body.replace(b"succeeded", b"failed"))
    assert verify(secret, request) and not verify(secret, tampered)
