"""The raw database holds no prompt, metadata, client_ref or output in the clear."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.runtime.execution import execute_task
from apps.tasks.models import Task

SECRET_PROMPT = "zebra-quasar confidential merger plans"
SECRET_META = "meta-value-platypus"
SECRET_REF = "client-ref-narwhal"


def _raw_task_row_bytes(task_id) -> bytes:
    with connection.cursor() as cursor:
        key = task_id.hex if connection.vendor == "sqlite" else task_id
        cursor.execute(f"SELECT * FROM {Task._meta.db_table} WHERE id = %s", [key])
        row = cursor.fetchone()
    assert row is not None
    parts = []
    for value in row:
        if isinstance(value, memoryview):
            value = value.tobytes()
        parts.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\x00".join(parts)


@pytest.mark.django_db
def test_prompt_output_metadata_and_client_ref_are_not_in_the_raw_row(acme_api):
    created = acme_api.post(
        "/api/v1/tasks",
        {"model": "echo", "prompt": SECRET_PROMPT, "metadata": {"k": SECRET_META}, "client_ref": SECRET_REF},
    )
    assert created.status == 201
    task = Task.objects.get(pk=created.body["id"])
    execute_task(task.id)
    task.refresh_from_db()
    assert task.state == "succeeded"
    assert task.output_ciphertext is not None

    raw = _raw_task_row_bytes(task.id)
    for secret in (SECRET_PROMPT, "zebra-quasar", "merger", SECRET_META, SECRET_REF):
        assert secret.encode() not in raw

    # ...while the tenant reads everything back through the API.
    shown = acme_api.get(f"/api/v1/tasks/{task.id}").body
    assert shown["input"] == {"prompt": SECRET_PROMPT}
    assert shown["output"] == SECRET_PROMPT
    assert shown["metadata"] == {"k": SECRET_META}
    assert shown["client_ref"] == SECRET_REF


@pytest.mark.django_db
def test_tenant_data_key_is_stored_only_wrapped(acme):
    from apps.security.crypto import cipher_for_wrapped_key

    wrapped = bytes(acme.wrapped_data_key)
    cipher = cipher_for_wrapped_key(wrapped)
    token = cipher.encrypt_json({"x": 1})
    # The stored value is not a usable Fernet key by itself (it is a Fernet token of one).
    from cryptography.fernet import Fernet

    with pytest.raises(ValueError):
        Fernet(wrapped)
    assert cipher.decrypt_json(token) == {"x": 1}


@pytest.mark.django_db
def test_one_tenants_ciphertext_does_not_decrypt_with_another_tenants_key(acme, globex):
    from apps.security.crypto import DecryptionError

    token = acme.cipher.encrypt_json({"prompt": SECRET_PROMPT})
    with pytest.raises(DecryptionError):
        globex.cipher.decrypt_json(token)
