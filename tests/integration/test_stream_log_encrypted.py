"""A task's stream log holds what the model generated only encrypted with the
tenant's key (Contracts: nothing a model generated is stored unencrypted
anywhere that persists), in each place the log lives: the database (embedded
mode) and Redis Streams (distributed mode, where REDIS_URL is set).

The echo model sends back a marker word; every stored byte of the log's
storage is then scanned for it: every row of the database's stream log table,
every key and value in the Redis database.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from django.db import connection

from apps.runtime.execution import execute_task
from apps.streaming.events import CHUNK, client_message
from apps.streaming.log import RedisStreamLog
from apps.streaming.models import StreamEvent
from apps.tasks.models import Task, TaskState

# The log is read back from another thread (the database log's reader): rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _marker() -> str:
    """One word, so the echo model streams it whole within one chunk. ':', '!' and '#'
    are outside the url-safe base64 alphabet of Fernet tokens, so ciphertext can never
    hold it by chance; it needs no JSON escaping, so a plaintext payload holds it as is."""
    return f"canary:{uuid.uuid4().hex}!#"


def _database_log_bytes() -> bytes:
    """Every column of every row of the database's stream log, as stored."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {StreamEvent._meta.db_table}")
        rows = cursor.fetchall()
    return b"\x00".join(_as_bytes(value) for row in rows for value in row)


def _redis_bytes(url: str) -> bytes:
    """Every key of the Redis database and every value under it, whatever its type."""
    client = redis.Redis.from_url(url)
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key).decode()
        if kind == "stream":
            parts += [b"%b=%b" % item for _, fields in client.xrange(key) for item in fields.items()]
        elif kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            parts += [b"%b=%b" % item for item in client.hgetall(key).items()]
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(client.smembers(key))
        elif kind == "zset":
            parts += client.zrange(key, 0, -1)
        # "none": the key expired between SCAN and TYPE.
    return b"\x00".join(parts)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, memoryview):
        return value.tobytes()
    return value if isinstance(value, bytes) else str(value).encode()


def test_the_stream_log_holds_generated_text_only_encrypted(acme, acme_api, stream_log_backend, settings):
    marker = _marker()
    prompt = f"the model repeats {marker} back"
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    task_id = uuid.UUID(created.body["id"])

    execute_task(task_id)

    assert Task.objects.get(pk=task_id).state == TaskState.SUCCEEDED
    stored = _database_log_bytes()
    if isinstance(stream_log_backend, RedisStreamLog):
        stored += _redis_bytes(settings.REDIS_URL)
    assert marker.encode() not in stored

    # The scan looked where the text went: the log holds the task's chunks, and the
    # tenant's key turns them back into the model's text. (A loop of its own: closing it
    # ends the database log's reader threads, and with them their database connections.)
    events = asyncio.run(stream_log_backend.read_all(task_id))
    texts = [client_message(acme.cipher, event)["text"] for _, event in events if event.kind == CHUNK]
    assert "".join(texts) == prompt
