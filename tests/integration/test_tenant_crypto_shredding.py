"""Deleting a tenant crypto-shreds it: its data key is destroyed, in a step
committed on its own, before its rows are deleted; afterwards nothing left in
the database decrypts what it had stored. The admin (one tenant, or a
selection) deletes through apps.tenants.data_keys.delete_tenant."""

from __future__ import annotations

import uuid

import pytest

from apps.runtime.execution import execute_task
from apps.security import crypto
from apps.security.crypto import DecryptionError
from apps.tasks.models import Task
from apps.tenants.data_keys import delete_tenant, encrypted_stores
from apps.tenants.models import AuditAction, AuditEvent, Tenant
from tests.integration.graph_support import TASKS
from tests.integration.rekey_support import decrypts, every_stored_key, stored_ciphertexts, stream_events

# The key's destruction must commit on its own: real transactions.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _finished_task(api) -> str:
    created = api.post(TASKS, {"model": "echo", "prompt": "the merger closes friday", "client_ref": "deal-1"})
    assert created.status == 201, created.body
    execute_task(uuid.UUID(created.body["id"]))
    return created.body["id"]


def _admin_delete(admin_client, tenant: Tenant, how: str):
    if how == "delete view":
        return admin_client.post(f"/admin/tenants/tenant/{tenant.pk}/delete/", {"post": "yes"})
    return admin_client.post(
        "/admin/tenants/tenant/", {"action": "delete_selected", "_selected_action": [str(tenant.pk)], "post": "yes"}
    )


@pytest.mark.parametrize("how", ["delete view", "delete_selected action"])
def test_deleting_a_tenant_in_the_admin_leaves_nothing_that_decrypts_its_data(
    acme, globex, acme_api, globex_api, admin_client, how
):
    task_id = _finished_task(acme_api)
    _finished_task(globex_api)
    captured = stored_ciphertexts(acme)
    assert len(captured) >= 4  # input, metadata, output, stream events
    assert acme.cipher.decrypt_json(captured[0])  # (and the key is now in this process's cache)

    response = _admin_delete(admin_client, acme, how)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert not Tenant.objects.filter(pk=acme.pk).exists()
    assert not Task.objects.filter(pk=task_id).exists() and stream_events(task_id) == []
    keys = every_stored_key()
    assert keys  # globex's: the database still holds keys, none of them acme's
    assert not any(decrypts(key, token) for key in keys for token in captured)
    assert crypto._cipher_cache.cache_info().currsize == 0  # nor does this process's memory
    assert AuditEvent.objects.filter(action=AuditAction.TENANT_DELETED, tenant_id=acme.pk).count() == 1


class FailingStore:
    """Registered last, purged first: deleting the rows fails at once."""

    name = "test.failing"

    def count(self, tenant) -> int:
        return 0

    def reencrypt(self, tenant, cipher, after, limit):
        raise AssertionError("not walked here")

    def purge(self, tenant) -> None:
        raise RuntimeError("the database went away")


def test_the_key_is_destroyed_and_committed_before_the_rows_go(acme, acme_api, monkeypatch):
    task_id = _finished_task(acme_api)
    captured = stored_ciphertexts(acme)
    monkeypatch.setattr(encrypted_stores, "_stores", {**encrypted_stores._stores, FailingStore.name: FailingStore()})

    with pytest.raises(RuntimeError, match="went away"):
        delete_tenant(acme)

    # The rows are still there, the key is not: the data is gone all the same.
    left = Tenant.objects.get(pk=acme.pk)
    assert Task.objects.filter(pk=task_id).exists() and stored_ciphertexts(left) == captured
    assert not any(decrypts(key, token) for key in every_stored_key() for token in captured)
    with pytest.raises(DecryptionError):
        left.cipher  # noqa: B018 (the property unwraps)

    monkeypatch.undo()
    delete_tenant(left)  # and the deletion can simply be run again
    assert not Tenant.objects.filter(pk=acme.pk).exists()
