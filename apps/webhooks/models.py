"""Webhooks: where a tenant wants to hear that its tasks ended, and each event
the platform owes it (a Delivery) with every attempt to send it.

What a tenant wrote (a callback URL, which may carry a token of its own) and
what is sent (the event's body, which holds the task's output when asked) are
encrypted with the tenant's data key; the admin shows only the host a
delivery goes to.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.tasks.models import Task
from apps.tenants.models import Tenant


class TenantWebhook(models.Model):
    """A tenant's webhook settings: its default callback URL and its signing secret."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="webhook")
    # Where every task of the tenant that names none of its own is reported; empty: nowhere.
    # Set by operators (the admin) and the tenant's key managers (PUT /api/v1/webhooks/settings).
    url = models.URLField(max_length=2000, blank=True, default="")
    # The HMAC-SHA256 key deliveries are signed with, encrypted with the tenant's
    # data key; made on first need, replaced by rotate_secret (shown once then).
    secret_ciphertext = models.BinaryField(null=True, editable=False)
    secret_created_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "tenant webhook"

    def __str__(self) -> str:
        return f"{self.tenant.slug} webhook"


class TaskWebhook(models.Model):
    """The callback a task was submitted with (webhook_url), kept until it ends."""

    task = models.OneToOneField(Task, on_delete=models.CASCADE, primary_key=True, related_name="webhook")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # {"url": ...}, encrypted with the tenant's data key (the tenant wrote it).
    url_ciphertext = models.BinaryField(null=True, editable=False)
    include_output = models.BooleanField(default=False)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"  # an attempt is due at next_attempt_at
    DELIVERED = "delivered", "delivered"  # the receiver answered 2xx
    FAILED = "failed", "failed"  # gave up: refused address, or the attempts ran out


class EventType(models.TextChoices):
    TASK_ENDED = "task.ended", "task.ended"


class DeliveryQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant) -> DeliveryQuerySet:
        return self.filter(tenant=tenant)


class Delivery(models.Model):
    """One event owed to one callback URL. Its id is the event id the receiver
    sees on every attempt (X-LLMAgentOS-Event-Id): the key to drop repeats by."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    event_type = models.CharField(max_length=32, choices=EventType.choices, default=EventType.TASK_ENDED)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    # scheme://host[:port] of the URL: what the admin shows (the path and query
    # may hold the tenant's token and stay in payload_ciphertext).
    target = models.CharField(max_length=300, blank=True, default="")
    # {"url": ..., "body": the exact JSON text sent}, encrypted with the tenant's
    # data key; None once the task was erased and the delivery was done with.
    payload_ciphertext = models.BinaryField(null=True, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    # The attempt count at which it fails for good: WEBHOOK_MAX_ATTEMPTS, and
    # that many more after each retry an operator asks for.
    give_up_after = models.PositiveIntegerField()
    # When the next attempt is due (pending); a sender that takes a delivery
    # moves it past the attempt's timeout, so no other sender takes it meanwhile.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["tenant", "-created_at"], name="delivery_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try at sending a delivery: what the receiver answered, or why nothing came back."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_number")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error}"
