"""Helpers of the webhook tests: end a task with a callback, send what is due."""

from __future__ import annotations

from typing import Any

from apps.webhooks import services
from apps.webhooks.models import Delivery, DeliveryStatus
from tests.conftest import ApiClient
from tests.integration.remote_support import run_task

SECRET = "/api/v1/webhooks/secret"
SETTINGS = "/api/v1/webhooks/settings"
DELIVERIES = "/api/v1/webhooks/deliveries"


def no_waiting(settings) -> None:
    """Retries due at once (no backoff), so a test sends them in a loop, not over minutes."""
    settings.WEBHOOK_BACKOFF_SECONDS = 0


def secret_of(api: ApiClient) -> str:
    """A fresh signing secret for ``api``'s tenant (shown once, by the API)."""
    issued = api.post(SECRET)
    assert issued.status == 200, issued.body
    return issued.body["secret"]


def end_task(api: ApiClient, **body: Any) -> dict:
    """Run an echo task to its end with the given extra fields (webhook_url, ...)."""
    return run_task(api, {"model": "echo", "prompt": "one two three", **body})


def send_until_settled(max_rounds: int = 10) -> list[Delivery]:
    """Run the delivery loop's step until nothing is pending (at most ``max_rounds``)."""
    for _ in range(max_rounds):
        if not Delivery.objects.filter(status=DeliveryStatus.PENDING).exists():
            break
        services.deliver_due()
    return list(Delivery.objects.order_by("created_at"))
