"""The streaming app's writes: publishers for workers, the done event, purges."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings

from apps.streaming.events import DONE, seal
from apps.streaming.log import stream_log
from apps.streaming.publisher import StreamPublisher

logger = logging.getLogger(__name__)


def open_publisher(task) -> StreamPublisher:
    publisher = StreamPublisher(task.id, task.tenant.cipher, stream_log(), settings.STREAM_COALESCE_SECONDS)
    publisher.begin_attempt(task.attempt)
    return publisher


def publish_done(task) -> None:
    """Append the final event; the task row must already hold its end state."""
    body = {
        "status": task.state,
        "usage": task.usage,
        "error": {"code": task.error_code, "message": task.error_message} if task.error_code else None,
    }
    try:
        stream_log().append(task.id, [seal(task.tenant.cipher, DONE, 0, body)])
    except Exception:
        # The database holds the outcome; stream readers fall back to it.
        logger.exception("could not publish the end of task %s to its stream", task.id)


def purge_stream(task_id: uuid.UUID) -> None:
    stream_log().purge(task_id)
