"""Webhooks are the tenant's own: a tenant's default callback URL catches its
tasks that name none (and no other tenant's), and a tenant never sees another's
deliveries, URL or secret."""

from __future__ import annotations

import pytest

from apps.tenants.services import issue_api_key
from apps.webhooks.models import Delivery
from tests.conftest import ApiClient
from tests.integration.webhook_support import DELIVERIES, SETTINGS, end_task, secret_of, send_until_settled
from tests.stubs.webhook_receiver import WebhookReceiver, verify

pytestmark = pytest.mark.django_db


def test_the_tenants_url_gets_its_tasks_only(acme_api, globex_api):
    secret = secret_of(acme_api)
    with WebhookReceiver() as receiver:
        assert acme_api.patch(SETTINGS, {"url": receiver.url}).status == 200
        acme_task = end_task(acme_api)
        end_task(globex_api)
        send_until_settled()

    (request,) = receiver.received
    assert request.json["task"]["id"] == acme_task["id"]
    assert verify(secret, request)


def test_a_tenant_sees_only_its_own_deliveries_and_settings(acme_api, globex_api):
    with WebhookReceiver() as receiver:
        acme_api.patch(SETTINGS, {"url": receiver.url})
        acme_secret = secret_of(acme_api)
        end_task(acme_api)
        send_until_settled()
    (acme_delivery,) = Delivery.objects.all()

    mine = acme_api.get(DELIVERIES)
    assert [d["id"] for d in mine.body["data"]] == [str(acme_delivery.pk)]
    assert mine.body["data"][0]["status"] == "delivered"
    assert globex_api.get(DELIVERIES).body["data"] == []
    assert globex_api.get(DELIVERIES, {"task": str(acme_delivery.task_id)}).body["data"] == []
    assert globex_api.get(SETTINGS).body["url"] is None
    assert secret_of(globex_api) != acme_secret


def test_settings_and_secrets_need_keys_manage(acme):
    limited = ApiClient(issue_api_key(acme, name="reader", scopes=["tasks:read"]).secret)
    assert limited.get(SETTINGS).status == 403
    assert limited.post("/api/v1/webhooks/secret").status == 403
    assert limited.get(DELIVERIES).status == 200
