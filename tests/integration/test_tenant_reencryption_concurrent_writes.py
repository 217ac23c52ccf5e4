"""The platform keeps writing while a tenant's data is re-encrypted, and what it
writes stays right: a row changed between the walk's read and its write is not
overwritten with stale ciphertext, and a value written under the old key after
the walk passed its row (by a process that loaded the tenant before the
rotation began) is re-encrypted before the old key is dropped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from apps.security.crypto import TenantCipher
from apps.tasks import services
from apps.tasks.models import Task, TaskState
from apps.tenants.data_keys import Batch, encrypted_stores
from tests.integration.graph_support import TASKS, run, submit_task
from tests.integration.rekey_support import TASK_COLUMNS, decrypts, primary_key, reencrypt, stored_ciphertexts

pytestmark = pytest.mark.django_db


def test_a_task_erased_mid_batch_stays_erased(acme, acme_api, django_capture_on_commit_callbacks, monkeypatch):
    capture = django_capture_on_commit_callbacks
    task = run(submit_task(acme_api, capture, prompt="forget me")["id"], capture)
    erased_input = bytes(task.input_ciphertext)
    real = TenantCipher.reencrypt

    def erased_meanwhile(self, token):
        # The walk has read the row and re-encrypts it: the tenant erases the task now.
        if bytes(token) == erased_input:
            services.erase_task(Task.objects.select_related("tenant").get(pk=task.pk))
        return real(self, token)

    monkeypatch.setattr(TenantCipher, "reencrypt", erased_meanwhile)
    reencrypt("acme")

    stored = Task.objects.values_list(*TASK_COLUMNS, "erased_at").get(pk=task.pk)
    assert stored[:3] == (None, None, None) and stored[3] is not None  # not brought back
    shown = acme_api.get(f"{TASKS}/{task.pk}").body
    assert (shown["erased"], shown["input"], shown["output"]) == (True, None, None)


@dataclass
class LateWriter:
    """An encrypted store walked last: its first walk stands for a write by a
    worker that loaded the tenant before the rotation began."""

    write: object
    name: str = "test.late-writer"
    written: list[bool] = field(default_factory=list)

    def count(self, tenant) -> int:
        return 0

    def reencrypt(self, tenant, cipher, after, limit) -> Batch:
        if not self.written:
            self.written.append(True)
            self.write()  # type: ignore[operator]
        return Batch(None, 0, 0, True)

    def purge(self, tenant) -> None:
        pass


def test_a_value_written_under_the_old_key_after_the_walk_is_reencrypted(
    acme, acme_api, django_capture_on_commit_callbacks, monkeypatch
):
    capture = django_capture_on_commit_callbacks
    task_id = submit_task(acme_api, capture, prompt="a long answer")["id"]
    old_key = primary_key(acme)
    running = services.claim_task(uuid.UUID(task_id), "worker-a")  # its tenant, and key, loaded now
    assert running is not None

    def finish_with_the_old_key() -> None:
        usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
        assert services.finish_task(running, state=TaskState.SUCCEEDED, output="a long answer", usage=usage)
        assert decrypts(old_key, bytes(Task.objects.get(pk=task_id).output_ciphertext))

    writer = LateWriter(finish_with_the_old_key)
    monkeypatch.setattr(encrypted_stores, "_stores", {**encrypted_stores._stores, writer.name: writer})
    reencrypt("acme")

    assert writer.written  # it wrote after the tasks were walked
    acme.refresh_from_db()
    assert acme.wrapped_retired_keys is None
    new_key = primary_key(acme)
    assert all(decrypts(new_key, token) for token in stored_ciphertexts(acme))
    assert acme_api.get(f"{TASKS}/{task_id}").body["output"] == "a long answer"
