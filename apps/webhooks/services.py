"""Webhooks: the only writer of their rows.

At least once: when a task ends, its Delivery row is written in the ending
transaction (the ``ending`` hook), so an ended task with a callback always
has one, and nothing is owed for a task whose end rolled back. A delivery
loop (``DeliveryLoop``, in the scheduler process) sends what is due, each
delivery taken with a conditional UPDATE so that two loops never send it at
once, and retries with exponential backoff and jitter up to
WEBHOOK_MAX_ATTEMPTS. The event id (the Delivery's id) is the same on every
attempt: receivers drop repeats by it. A crash between the receiver's 2xx
and the row's update sends the event again: at least once, not exactly once.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from apps.core import notify
from apps.core.errors import InvalidInput, NotFound
from apps.core.fields import column_of, concrete_field
from apps.core.rows import reader
from apps.core.secrets import random_secret
from apps.tasks.models import Task
from apps.tasks.payloads import read_output
from apps.tasks.services import TaskRequest
from apps.tenants.models import Tenant
from apps.webhooks import sender
from apps.webhooks.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EventType,
    TaskWebhook,
    TenantWebhook,
)

logger = logging.getLogger(__name__)

# apps.core.notify channel: a delivery became due (written, or retried by an operator).
WAKE_CHANNEL = "webhooks"
SECRET_PREFIX = "whsec"
# A sender that took a delivery owns it this much longer than one attempt can
# last; if it dies meanwhile, the delivery is due again after that.
TAKE_MARGIN_SECONDS = 30


# --- Submission: the task's own callback ------------------------------------------


def check_task_webhook(tenant: Tenant, request: TaskRequest) -> None:
    """Before the submitting transaction: a callback URL the platform may not call is a 400."""
    if request.webhook_url:
        sender.check_url(request.webhook_url, "webhook_url")


def keep_task_webhook(task: Task, request: TaskRequest) -> None:
    """In the submitting transaction: the task's callback, for when it ends."""
    if not request.webhook_url and not request.webhook_include_output:
        return
    TaskWebhook.objects.create(
        task=task,
        tenant=task.tenant,
        url_ciphertext=task.tenant.cipher.encrypt_json({"url": request.webhook_url}) if request.webhook_url else None,
        include_output=request.webhook_include_output,
    )


# --- The task's end: the event owed ------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    """Where a task's end is reported, as its ending transaction reads it: the task's
    own callback (``url_ciphertext``, None: none) and its tenant's (``tenant_url``, "": none)."""

    url_ciphertext: bytes | None
    include_output: bool
    tenant_url: str

    @property
    def owed(self) -> bool:
        return bool(self.url_ciphertext or self.tenant_url)


@functools.cache
def _callback_sql(vendor: str, alias: str) -> str:
    q = connection.ops.quote_name
    task, own, tenant = (q(model._meta.db_table) for model in (Task, TaskWebhook, TenantWebhook))
    task_id, task_tenant = (f"{task}.{q(column_of(Task, name))}" for name in ("id", "tenant"))
    # The tenant's row by the task's tenant_id (TenantWebhook's key is the tenant's):
    # no join through the tenants' table, whose row the foreign key guarantees.
    return (
        f"SELECT {own}.{q(column_of(TaskWebhook, 'url_ciphertext'))}, "
        f"{own}.{q(column_of(TaskWebhook, 'include_output'))}, {tenant}.{q(column_of(TenantWebhook, 'url'))} "
        f"FROM {task} "
        f"LEFT JOIN {own} ON {own}.{q(column_of(TaskWebhook, 'task'))} = {task_id} "
        f"LEFT JOIN {tenant} ON {tenant}.{q(column_of(TenantWebhook, 'tenant'))} = {task_tenant} "
        f"WHERE {task_id} = %s"
    )


@functools.cache
def _callback_readers(vendor: str, alias: str) -> tuple[Callable[[Any], Any], ...]:
    return (
        reader(TaskWebhook, "url_ciphertext", connection),
        reader(TaskWebhook, "include_output", connection),
        reader(TenantWebhook, "url", connection),
    )


def callback_of(task_id: uuid.UUID) -> Callback | None:
    """The callbacks of ``task_id`` (None: no such task), in one joined read.

    Run in every task's ending transaction, and most tasks have no callback: through
    a cursor it costs a tenth of the ORM query it replaces (its compilation, ~1 ms here)."""
    read_url, read_include, read_tenant_url = _callback_readers(connection.vendor, connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(
            _callback_sql(connection.vendor, connection.alias),
            [concrete_field(Task, "id").get_db_prep_value(task_id, connection)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    url_ciphertext, include_output, tenant_url = row
    return Callback(
        url_ciphertext=None if url_ciphertext is None else bytes(read_url(url_ciphertext)),
        include_output=bool(read_include(include_output)),
        tenant_url=read_tenant_url(tenant_url) or "",
    )


def record_task_end(task_id: uuid.UUID, _usage: Any = None) -> None:
    """In the ending transaction: the Delivery of ``task.ended`` when the task (or,
    failing that, its tenant) names a callback URL. One read when neither does."""
    found = callback_of(task_id)
    if found is None or not found.owed:
        return
    task = Task.objects.select_related("tenant", "model", "model_version").get(pk=task_id)
    cipher = task.tenant.cipher
    if found.url_ciphertext:
        url = cipher.decrypt_json(found.url_ciphertext)["url"]
    else:
        url = found.tenant_url
    event_id = uuid.uuid4()
    body = json_text(task_ended_event(event_id, task, include_output=found.include_output))
    Delivery.objects.create(
        id=event_id,
        tenant=task.tenant,
        task=task,
        event_type=EventType.TASK_ENDED,
        target=_target(url),
        payload_ciphertext=cipher.encrypt_json({"url": url, "body": body}),
        give_up_after=settings.WEBHOOK_MAX_ATTEMPTS,
    )
    transaction.on_commit(wake_deliveries, robust=True)


def task_ended_event(event_id: uuid.UUID, task: Task, *, include_output: bool) -> dict[str, Any]:
    """The event's body: a summary of the task, its output only when the task asked."""
    summary: dict[str, Any] = {
        "id": str(task.pk),
        "status": task.state,
        "model": task.model.name,
        "model_version": task.model_version.version if task.model_version is not None else None,
        "usage": task.usage,
        "error": {"code": task.error_code, "message": task.error_message} if task.error_code else None,
        "created_at": task.created_at,
        "finished_at": task.finished_at,
    }
    if include_output:
        summary["output"] = read_output(task)
    return {"event_id": str(event_id), "type": EventType.TASK_ENDED.value, "created_at": timezone.now(),
            "task": summary}


def json_text(value: Any) -> str:
    return DjangoJSONEncoder(separators=(",", ":")).encode(value)


def _target(url: str) -> str:
    # Never raises: this runs in the ending transaction, which must not fail over a label.
    try:
        parsed = sender.parse_url(url, "url")
    except InvalidInput:
        return ""
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


def wake_deliveries() -> None:
    notify.wake(WAKE_CHANNEL)


def forget_erased(task_ids: Sequence[uuid.UUID]) -> None:
    """After erasure: the tasks' callback URLs go, and so do the bodies of their
    deliveries that are done (a pending one is still sent, then kept until retention)."""
    TaskWebhook.objects.filter(task_id__in=task_ids).delete()
    Delivery.objects.filter(task_id__in=task_ids).exclude(status=DeliveryStatus.PENDING).update(
        payload_ciphertext=None
    )


# --- The tenant's settings and secret ------------------------------------------------


def settings_of(tenant: Tenant) -> TenantWebhook:
    """The tenant's webhook settings, made (with a secret) on first need."""
    row, _ = TenantWebhook.objects.get_or_create(tenant=tenant)
    if row.secret_ciphertext is None:
        # Conditional: two processes making it at once agree on the first one written.
        TenantWebhook.objects.filter(pk=tenant.pk, secret_ciphertext__isnull=True).update(
            secret_ciphertext=tenant.cipher.encrypt_json(random_secret(SECRET_PREFIX)),
            secret_created_at=timezone.now(),
        )
        row.refresh_from_db()
    return row


def secret_of(tenant: Tenant) -> str:
    row = settings_of(tenant)
    assert row.secret_ciphertext is not None
    return tenant.cipher.decrypt_json(row.secret_ciphertext)


def set_url(tenant: Tenant, url: str | None) -> TenantWebhook:
    """The tenant's default callback URL (None or "": none); a 400 naming ``url`` when refused."""
    if url:
        sender.check_url(url, "url")
    row = settings_of(tenant)
    row.url = url or ""
    row.save(update_fields=["url"])
    return row


def rotate_secret(tenant: Tenant) -> str:
    """A new signing secret, in force for the next attempt of every delivery; returned once."""
    secret = random_secret(SECRET_PREFIX)
    settings_of(tenant)
    TenantWebhook.objects.filter(pk=tenant.pk).update(
        secret_ciphertext=tenant.cipher.encrypt_json(secret), secret_created_at=timezone.now()
    )
    return secret


# --- Reads for the tenant -------------------------------------------------------------


def deliveries_of(tenant: Tenant) -> QuerySet[Delivery]:
    return Delivery.objects.for_tenant(tenant)


def delivery_of(tenant: Tenant, delivery_id: uuid.UUID) -> Delivery:
    delivery = deliveries_of(tenant).filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("no delivery with this id", code="delivery_not_found")
    return delivery


# --- Sending ---------------------------------------------------------------------------


def backoff_seconds(failed_attempts: int) -> float:
    """The wait after the ``failed_attempts``-th failure: doubling from
    WEBHOOK_BACKOFF_SECONDS up to WEBHOOK_BACKOFF_MAX_SECONDS, jittered down by up
    to half, so receivers coming back are not hit by every sender at once."""
    ceiling = min(
        settings.WEBHOOK_BACKOFF_MAX_SECONDS,
        settings.WEBHOOK_BACKOFF_SECONDS * 2 ** min(max(failed_attempts - 1, 0), 32),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _take(delivery_id: uuid.UUID, due_at: Any) -> bool:
    """Own a due delivery for one attempt; False when another sender took it first."""
    hold = timezone.now() + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 2 + TAKE_MARGIN_SECONDS)
    return bool(
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at=due_at).update(
            next_attempt_at=hold
        )
    )


def deliver_due(limit: int = 100, executor: Executor | None = None) -> int:
    """Send the deliveries that are due (up to ``limit``), each once; returns how many
    were attempted. With ``executor``, the attempts run in its threads."""
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("pk", "next_attempt_at")[:limit]
    )
    taken = [delivery_id for delivery_id, due_at in due if _take(delivery_id, due_at)]
    if executor is None:
        for delivery_id in taken:
            attempt(delivery_id)
    else:
        list(executor.map(_attempt_in_thread, taken))
    return len(taken)


def _attempt_in_thread(delivery_id: uuid.UUID) -> None:
    try:
        attempt(delivery_id)
    finally:
        # A sender thread's connection, broken while the database was away,
        # must not be reused: Django tidies them only around requests.
        close_old_connections()


def seconds_until_due(cap: float) -> float:
    """How long until the next pending delivery is due (0: now), at most ``cap``."""
    next_at = (
        Delivery.objects.filter(status=DeliveryStatus.PENDING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if next_at is None:
        return cap
    return max(0.0, min(cap, (next_at - timezone.now()).total_seconds()))


def attempt(delivery_id: uuid.UUID) -> None:
    """One attempt at a delivery this process took, recorded with its outcome."""
    delivery = Delivery.objects.select_related("tenant").get(pk=delivery_id)
    number = delivery.attempts + 1
    started_at = timezone.now()
    if delivery.payload_ciphertext is None:
        outcome = sender.Outcome(None, "the task was erased: nothing left to send", permanent=True)
    else:
        payload = delivery.tenant.cipher.decrypt_json(delivery.payload_ciphertext)
        body = payload["body"].encode()
        timestamp = int(time.time())
        outcome = sender.post(payload["url"], body, {
            sender.EVENT_ID_HEADER: str(delivery.pk),
            sender.EVENT_TYPE_HEADER: delivery.event_type,
            sender.TIMESTAMP_HEADER: str(timestamp),
            sender.SIGNATURE_HEADER: sender.signature(secret_of(delivery.tenant), timestamp, body),
            sender.ATTEMPT_HEADER: str(number),
        })
    _record(delivery, number, started_at, outcome)


def _record(delivery: Delivery, number: int, started_at: Any, outcome: sender.Outcome) -> None:
    now = timezone.now()
    changes: dict[str, Any] = {
        "attempts": number, "last_status_code": outcome.status_code, "last_error": outcome.error[:2000],
    }
    if outcome.delivered:
        changes.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
    elif outcome.permanent or number >= delivery.give_up_after:
        changes.update(status=DeliveryStatus.FAILED)
    else:
        changes.update(next_attempt_at=now + timedelta(seconds=backoff_seconds(number)))
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery, number=number, started_at=started_at, duration_ms=outcome.duration_ms,
            status_code=outcome.status_code, error=outcome.error[:2000],
        )
        Delivery.objects.filter(pk=delivery.pk).update(**changes)
    if not outcome.delivered:
        logger.info(
            "webhook %s attempt %s to %s: %s%s", delivery.pk, number, delivery.target,
            outcome.status_code or outcome.error, " (giving up)" if changes.get("status") else "",
        )


def retry(deliveries: Iterable[Delivery]) -> int:
    """Operators: send again now, with a fresh round of attempts (delivered ones too:
    the receiver drops a repeat by its event id)."""
    ids = [delivery.pk for delivery in deliveries]
    retried = Delivery.objects.filter(pk__in=ids).exclude(payload_ciphertext=None).update(
        status=DeliveryStatus.PENDING,
        next_attempt_at=timezone.now(),
        give_up_after=F("attempts") + settings.WEBHOOK_MAX_ATTEMPTS,
    )
    if retried:
        transaction.on_commit(wake_deliveries, robust=True)
    return retried
