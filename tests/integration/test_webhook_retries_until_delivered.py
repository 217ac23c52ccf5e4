"""A webhook is delivered at least once: a receiver that fails twice, then
answers 200, gets three requests with the same event id (its key to drop
repeats), each recorded with its status, and the delivery ends delivered. One
that never answers 2xx gets WEBHOOK_MAX_ATTEMPTS requests; the delivery then
fails, until an operator retries it."""

from __future__ import annotations

import pytest

from apps.webhooks import services
from apps.webhooks.models import Delivery, DeliveryStatus
from tests.integration.webhook_support import end_task, no_waiting, send_until_settled
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db


def test_a_receiver_failing_twice_gets_the_same_event_three_times(acme_api, settings):
    no_waiting(settings)
    with WebhookReceiver(fail_first=2) as receiver:
        end_task(acme_api, webhook_url=receiver.url)
        (delivery,) = send_until_settled()

    assert [r.event_id for r in receiver.received] == [str(delivery.pk)] * 3
    assert [r.headers["x-llmagentos-delivery-attempt"] for r in receiver.received] == ["1", "2", "3"]
    assert len({r.body for r in receiver.received}) == 1  # the same event, re-signed each time
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.delivered_at is not None
    assert delivery.attempts == 3
    assert [(a.number, a.status_code) for a in delivery.attempt_log.all()] == [(1, 500), (2, 500), (3, 200)]


def test_a_failed_attempt_waits_before_the_next(acme_api, settings):
    settings.WEBHOOK_BACKOFF_SECONDS = 3600
    with WebhookReceiver(fail_first=1) as receiver:
        end_task(acme_api, webhook_url=receiver.url)
        services.deliver_due()
        services.deliver_due()  # nothing due yet

    assert len(receiver.received) == 1
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code == 500
    assert delivery.next_attempt_at > delivery.attempt_log.get().started_at


def test_it_gives_up_after_the_attempt_limit_until_retried(acme_api, settings):
    no_waiting(settings)
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    with WebhookReceiver(fail_first=2, fail_status=503) as receiver:
        end_task(acme_api, webhook_url=receiver.url)
        (delivery,) = send_until_settled()
        assert (delivery.status, delivery.attempts, len(receiver.received)) == (DeliveryStatus.FAILED, 2, 2)

        services.retry([delivery])
        (delivery,) = send_until_settled()

    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 3)
    assert len({r.event_id for r in receiver.received}) == 1
