"""The streaming app's writes: publishers for workers, the done event, purges."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.conf import settings

from apps.security.crypto import TenantCipher
from apps.streaming.events import DONE, RESUMED, end_of, seal
from apps.streaming.log import RedisStreamLog, stream_log
from apps.streaming.models import StreamEvent
from apps.streaming.publisher import StreamPublisher
from apps.tasks.models import Task
from apps.tenants.data_keys import Batch, Cursor, EncryptedColumns, walk
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)


def open_publisher(task, *, resuming: bool = False) -> StreamPublisher:
    """The publisher of ``task``'s claimed attempt; ``resuming``: it goes on after a
    suspension (a ``resumed`` event, and seq continues) rather than starting."""
    publisher = StreamPublisher(
        task.id, task.tenant.cipher, stream_log(), settings.STREAM_COALESCE_SECONDS,
        resume=task.attempt > 1 or resuming, attempt=task.attempt,
    )
    if resuming:
        publisher.mark(RESUMED, {})
    else:
        publisher.begin_attempt(task.attempt)
    return publisher


def publish_done(task) -> None:
    """Append the final event; the task row must already hold its end state."""
    try:
        stream_log().append(task.id, [seal(task.tenant.cipher, DONE, 0, end_of(task))])
    except Exception:
        # The database holds the outcome; stream readers fall back to it.
        logger.exception("could not publish the end of task %s to its stream", task.id)


def publish_end(task_id: uuid.UUID, ended: Task | None = None) -> None:
    """apps.tasks.lifecycle ``ended`` effect: ``ended`` is the task as its end was
    written (tenant loaded), or None to read it now."""
    publish_done(ended if ended is not None else Task.objects.select_related("tenant").get(pk=task_id))


def purge_stream(task_id: uuid.UUID) -> None:
    stream_log().purge(task_id)


def purge_streams(task_ids: Sequence[uuid.UUID]) -> None:
    """apps.tasks.lifecycle ``erased`` effect."""
    for task_id in task_ids:
        purge_stream(task_id)


# --- Where the stream log keeps ciphertext (apps.tenants.data_keys) ----------------------


def _events_of(tenant: Tenant):
    return StreamEvent.objects.filter(task_id__in=Task.objects.for_tenant(tenant).values("pk"))


# The database log (embedded mode): one row per event. (Empty in distributed mode.)
DATABASE_LOG_STORE = EncryptedColumns("streaming.database-log", _events_of, ("payload",))


class RedisLogStore:
    """The Redis log's streams of a tenant, one per task (distributed mode; walked by task)."""

    name = "streaming.redis-log"

    def _log(self) -> RedisStreamLog | None:
        log = stream_log()
        return log if isinstance(log, RedisStreamLog) else None

    def count(self, tenant: Tenant) -> int:
        return Task.objects.for_tenant(tenant).count() if self._log() is not None else 0

    def reencrypt(self, tenant: Tenant, cipher: TenantCipher, after: Cursor, limit: int) -> Batch:
        log = self._log()
        if log is None:
            return Batch(after, 0, 0, True)
        found, cursor, done = walk(Task.objects.for_tenant(tenant), after, limit)
        return Batch(cursor, len(found), sum(log.reencrypt(task_id, cipher) for (task_id,) in found), done)

    def purge(self, tenant: Tenant) -> None:
        log = self._log()
        if log is not None:
            for task_id in Task.objects.for_tenant(tenant).values_list("pk", flat=True):
                log.purge(task_id)


ENCRYPTED_STORES = (DATABASE_LOG_STORE, RedisLogStore())
