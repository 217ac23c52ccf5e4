"""The streaming app's writes: publishers for workers, the done event, purges."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.conf import settings

from apps.streaming.events import DONE, end_of, seal
from apps.streaming.log import stream_log
from apps.streaming.publisher import StreamPublisher
from apps.tasks.models import Task

logger = logging.getLogger(__name__)


def open_publisher(task) -> StreamPublisher:
    publisher = StreamPublisher(
        task.id, task.tenant.cipher, stream_log(), settings.STREAM_COALESCE_SECONDS, resume=task.attempt > 1
    )
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
