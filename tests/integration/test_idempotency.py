"""Idempotency-Key: a retried submission returns the first task; a reused key with another body is 409."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.db import connection

from apps.tasks.models import IdempotencyKey, Task

BODY = {"model": "echo", "prompt": "charge the card once"}


@pytest.mark.django_db
def test_same_key_same_body_returns_the_same_task(acme_api):
    first = acme_api.post("/api/v1/tasks", BODY, **{"Idempotency-Key": "order-42"})
    again = acme_api.post("/api/v1/tasks", BODY, **{"Idempotency-Key": "order-42"})
    assert first.status == again.status == 201
    assert again.body["id"] == first.body["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_same_key_different_body_is_a_conflict(acme_api):
    acme_api.post("/api/v1/tasks", BODY, **{"Idempotency-Key": "order-43"})
    clash = acme_api.post("/api/v1/tasks", {**BODY, "prompt": "charge it twice"}, **{"Idempotency-Key": "order-43"})
    assert clash.status == 409
    assert clash.body["error"]["code"] == "idempotency_key_reused"
    assert clash.body["error"]["param"] == "Idempotency-Key"
    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_per_tenant(acme_api, globex_api):
    mine = acme_api.post("/api/v1/tasks", BODY, **{"Idempotency-Key": "shared-name"})
    theirs = globex_api.post("/api/v1/tasks", {**BODY, "prompt": "other"}, **{"Idempotency-Key": "shared-name"})
    assert mine.status == theirs.status == 201
    assert mine.body["id"] != theirs.body["id"]


@pytest.mark.django_db
def test_no_key_means_a_new_task_each_time(acme_api):
    acme_api.post("/api/v1/tasks", BODY)
    acme_api.post("/api/v1/tasks", BODY)
    assert Task.objects.count() == 2


@pytest.mark.django_db
def test_the_key_is_stored_only_as_a_digest(acme, globex, acme_api, globex_api):
    acme_api.post("/api/v1/tasks", BODY, **{"Idempotency-Key": "order-secret-77"})
    globex_api.post("/api/v1/tasks", BODY, **{"Idempotency-Key": "order-secret-77"})

    # No column of the stored rows holds the key ("-" and "o", "r", "s", "t" are not hex,
    # so only the key itself, not a digest, could contain it).
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {IdempotencyKey._meta.db_table}")
        rows = cursor.fetchall()
    stored = " ".join(str(bytes(value) if isinstance(value, memoryview) else value) for row in rows for value in row)
    assert "order-secret-77" not in stored

    # Each tenant's digest is keyed with its own data key: the same key gives two
    # unrelated digests, and neither is a hash anyone could compute from a guess.
    mine = IdempotencyKey.objects.get(tenant=acme).key_digest
    theirs = IdempotencyKey.objects.get(tenant=globex).key_digest
    assert re.fullmatch(r"[0-9a-f]{64}", mine) and re.fullmatch(r"[0-9a-f]{64}", theirs)
    assert mine != theirs
    assert hashlib.sha256(b"order-secret-77").hexdigest() not in (mine, theirs)


@pytest.mark.django_db
def test_a_malformed_key_is_refused(acme_api):
    bad = acme_api.post("/api/v1/tasks", BODY, **{"Idempotency-Key": "x" * 300})
    assert bad.status == 400
    assert bad.body["error"]["param"] == "Idempotency-Key"
