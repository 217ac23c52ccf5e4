"""A tenant's open WebSocket streams, capped at ``settings.MAX_STREAMS_PER_TENANT``.

Counted in the database, the one store every server process shares in both
modes (embedded ``make run`` also runs several server processes): one
OpenStream row per open stream, written when the handshake is admitted and
deleted when the socket closes. A row is a lease: the consumer renews it
every RENEW_SECONDS, so the rows of a server process that died without
closing its sockets stop counting LEASE_SECONDS later.

Admission takes a lock on the tenant's row for the count and the insert
(SELECT … FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions already
serialise writers), so two processes admitting at once cannot both take the
last place. Nothing here is on the path of a stream's tokens: one insert and
one delete per stream, one update per open stream every RENEW_SECONDS.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.streaming.models import OpenStream
from apps.tenants.models import Tenant

LEASE_SECONDS = 60
RENEW_SECONDS = LEASE_SECONDS / 3


def open_stream(tenant_id: uuid.UUID, task_id: uuid.UUID) -> uuid.UUID | None:
    """A lease on one of the tenant's stream places (its id), or None when all are taken."""
    now = timezone.now()
    with transaction.atomic():
        # The lock: a tenant's admissions run one at a time across processes.
        Tenant.objects.select_for_update().filter(pk=tenant_id).values_list("pk", flat=True).first()
        OpenStream.objects.filter(tenant_id=tenant_id, expires_at__lte=now).delete()
        if OpenStream.objects.filter(tenant_id=tenant_id).count() >= settings.MAX_STREAMS_PER_TENANT:
            return None
        lease = OpenStream.objects.create(
            tenant_id=tenant_id, task_id=task_id, expires_at=now + timedelta(seconds=LEASE_SECONDS)
        )
    return lease.pk


def renew_stream(lease_id: uuid.UUID) -> None:
    OpenStream.objects.filter(pk=lease_id).update(expires_at=timezone.now() + timedelta(seconds=LEASE_SECONDS))


def close_stream(lease_id: uuid.UUID) -> None:
    OpenStream.objects.filter(pk=lease_id).delete()
