"""The embedded mode's stream log: one row per stream event, encrypted.

In distributed mode (REDIS_URL) the log is a Redis Stream per task instead
and this table stays empty.
"""

from django.db import models
from django.utils import timezone


class StreamEvent(models.Model):
    task_id = models.UUIDField(db_index=True)
    kind = models.CharField(max_length=16)  # chunk | restart | done
    seq = models.PositiveIntegerField(default=0)  # chunk sequence; 0 for other kinds
    payload = models.BinaryField()  # encrypted with the tenant's data key
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["task_id", "id"], name="stream_event_task_id")]
