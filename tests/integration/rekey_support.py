"""Helpers for the tests of a tenant's data key over its life (apps.tenants.data_keys):
what a tenant has stored encrypted, the keys that decrypt it, the command."""

from __future__ import annotations

import io
import json
import uuid

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.management import call_command

from apps.streaming.events import StoredEvent
from apps.streaming.log import RedisStreamLog, stream_log
from apps.streaming.models import StreamEvent
from apps.tasks.models import Task, Workflow
from apps.tenants.models import Tenant
from tests.integration.stream_support import on_stream_loop

TASK_COLUMNS = ("input_ciphertext", "meta_ciphertext", "output_ciphertext")


def _master_keyring() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.MASTER_KEYS])


def primary_key(tenant: Tenant) -> Fernet:
    """The tenant's data key as stored now, unwrapped with the master keys."""
    tenant.refresh_from_db()
    return Fernet(_master_keyring().decrypt(bytes(tenant.wrapped_data_key)))


def every_stored_key() -> list[Fernet]:
    """Every data key the database still holds, for any tenant, current or retired."""
    keyring = _master_keyring()
    keys = []
    for wrapped, retired in Tenant.objects.values_list("wrapped_data_key", "wrapped_retired_keys"):
        try:
            keys.append(Fernet(keyring.decrypt(bytes(wrapped))))
        except InvalidToken:
            pass  # destroyed
        if retired is not None:
            keys += [Fernet(key.encode()) for key in json.loads(keyring.decrypt(bytes(retired)))]
    return keys


def decrypts(key: Fernet, token: bytes) -> bool:
    try:
        key.decrypt(token)
    except InvalidToken:
        return False
    return True


def stream_events(task_id: uuid.UUID | str) -> list[StoredEvent]:
    """A task's stream log as stored, wherever the log lives."""
    log = stream_log()
    if isinstance(log, RedisStreamLog):
        return [event for _, event in on_stream_loop(log.read_all(uuid.UUID(str(task_id))))]
    # (Read here, not through the log's reader thread: the test's rows are not committed.)
    rows = StreamEvent.objects.filter(task_id=task_id).order_by("id").values_list("kind", "seq", "payload")
    return [StoredEvent(kind, seq, bytes(payload)) for kind, seq, payload in rows]


def stored_ciphertexts(tenant: Tenant) -> list[bytes]:
    """Everything the tenant has stored encrypted: its tasks' input, metadata and
    output, its workflows' nodes, its streams' events."""
    tasks = Task.objects.filter(tenant=tenant).order_by("pk")
    values = [value for row in tasks.values_list(*TASK_COLUMNS) for value in row]
    values += list(Workflow.objects.filter(tenant=tenant).order_by("pk").values_list("nodes_ciphertext", flat=True))
    values += [event.payload for task_id in tasks.values_list("pk", flat=True) for event in stream_events(task_id)]
    return [bytes(value) for value in values if value is not None]


def reencrypt(slug: str, *options: str) -> tuple[str, str]:
    """``manage.py rotate_master_keys --reencrypt SLUG``, in this process: (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_master_keys", "--reencrypt", slug, *options, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()
