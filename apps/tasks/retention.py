"""Output retention: a tenant's finished tasks lose their input and output after
``Tenant.output_retention_days`` (None: kept forever).

Purging is erasure (apps.tasks.services.erase_finished_tasks, the same update
as DELETE /api/v1/tasks/{id}): the row stays for accounting, marked erased,
and the task's stream log goes too. A task's age is counted from when it
finished; tasks not yet finished are never touched.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from apps.tasks import services
from apps.tasks.models import TERMINAL_STATES, Task
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

# Erased per transaction: bounds the UPDATE's id list and how long rows stay locked.
BATCH_SIZE = 500


def purge_expired_outputs(now: datetime | None = None) -> int:
    """Erase every finished task older than its tenant's retention; returns how many."""
    now = now or timezone.now()
    purged = 0
    tenants = Tenant.objects.filter(output_retention_days__isnull=False).only("pk", "slug", "output_retention_days")
    for tenant in tenants:
        if tenant.output_retention_days is None:  # keeps outputs forever (the query leaves these out)
            continue
        cutoff = now - timedelta(days=tenant.output_retention_days)
        expired = Task.objects.for_tenant(tenant).filter(
            state__in=TERMINAL_STATES, finished_at__lt=cutoff, erased_at__isnull=True
        ).order_by()
        for_tenant = 0
        while True:
            ids = list(expired.values_list("pk", flat=True)[:BATCH_SIZE])
            with transaction.atomic():
                batch = services.erase_finished_tasks(Task.objects.filter(pk__in=ids))
            for_tenant += batch
            if len(ids) < BATCH_SIZE or not batch:
                break
        if for_tenant:
            logger.info("tenant %s: erased %d tasks finished before %s", tenant.slug, for_tenant, cutoff.isoformat())
        purged += for_tenant
    return purged
