"""A callback URL may not reach the platform's own network: unless
WEBHOOKS_ALLOW_PRIVATE (on in the local profile the tests run in; off in
production), a webhook_url on a loopback, private or link-local address is
refused at submission (400 naming it, on a task and on a workflow's node),
in the tenant's settings (400 naming url), and at each delivery (the delivery
fails for good, nothing sent), so a name that resolves elsewhere later is
caught too."""

from __future__ import annotations

import pytest

from apps.tasks.models import Task
from apps.webhooks.models import Delivery, DeliveryStatus
from tests.integration.webhook_support import SETTINGS, end_task, send_until_settled
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"


@pytest.fixture
def private_refused(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False  # the production default


@pytest.mark.parametrize(("url", "kind"), [
    ("http://127.0.0.1:9000/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://10.0.0.7/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::1]/hook", "loopback"),
])
def test_a_task_naming_a_private_callback_is_a_400(private_refused, acme_api, url, kind):
    response = acme_api.post(TASKS, {"model": "echo", "prompt": "hi", "webhook_url": url})

    assert response.status == 400, response.body
    assert response.body["error"]["param"] == "webhook_url"
    assert kind in response.body["error"]["message"]
    assert not Task.objects.exists()


def test_a_workflow_node_naming_one_is_refused_naming_the_node(private_refused, acme_api):
    response = acme_api.post("/api/v1/workflows", {"nodes": [
        {"name": "a", "model": "echo", "prompt": "x"},
        {"name": "b", "model": "echo", "prompt": "y", "webhook_url": "http://127.0.0.1/hook"},
    ]})

    assert response.status == 400, response.body
    assert response.body["error"]["param"] == "nodes.1.webhook_url"
    assert not Task.objects.exists()


def test_the_tenants_own_url_is_refused_too(private_refused, acme_api):
    response = acme_api.patch(SETTINGS, {"url": "http://192.168.1.10/hook"})

    assert response.status == 400, response.body
    assert response.body["error"]["param"] == "url"
    assert acme_api.get(SETTINGS).body["url"] is None


def test_a_private_address_at_delivery_fails_it_and_sends_nothing(settings, acme_api):
    with WebhookReceiver() as receiver:
        end_task(acme_api, webhook_url=receiver.url)  # allowed when submitted...
        settings.WEBHOOKS_ALLOW_PRIVATE = False  # ...not when sent (as after a DNS change)
        (delivery,) = send_until_settled()

    assert receiver.received == []
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1  # permanent: no retry
    assert "loopback" in delivery.last_error and "WEBHOOKS_ALLOW_PRIVATE" in delivery.last_error


def test_the_setting_allows_them(settings, acme_api):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    with WebhookReceiver() as receiver:
        end_task(acme_api, webhook_url=receiver.url)
        send_until_settled()

    assert len(receiver.received) == 1
    assert Delivery.objects.get().status == DeliveryStatus.DELIVERED
