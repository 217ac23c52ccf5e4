"""The embedded mode's stream log: one row per stream event, encrypted.

In distributed mode (REDIS_URL) the log is a Redis Stream per task instead
and this table stays empty. Also the open streams, counted per tenant.
"""

import uuid

from django.db import models
from django.utils import timezone


class StreamEvent(models.Model):
    task_id = models.UUIDField(db_index=True)
    kind = models.CharField(max_length=16)  # chunk | restart | suspended | resumed | done
    seq = models.PositiveIntegerField(default=0)  # chunk sequence; 0 for other kinds
    payload = models.BinaryField()  # encrypted with the tenant's data key
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["task_id", "id"], name="stream_event_task_id")]


class OpenStream(models.Model):
    """A WebSocket stream open on some server process, counted against its tenant's
    cap (MAX_STREAMS_PER_TENANT; apps.streaming.open_streams). A lease: its server
    renews it while the stream is open, and one whose process died expires."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    task_id = models.UUIDField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "expires_at"], name="open_stream_tenant_expiry")]
