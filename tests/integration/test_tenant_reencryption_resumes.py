"""A re-encryption killed halfway leaves the platform serving (both keys decrypt)
and resumes where it stopped when run again: the rows committed before the kill
are not re-encrypted twice, and no second new key is made."""

from __future__ import annotations

import pytest

from apps.security.crypto import TenantCipher
from tests.integration.graph_support import run, submit_task
from tests.integration.rekey_support import (
    TASK_COLUMNS,
    decrypts,
    primary_key,
    reencrypt,
    stored_ciphertexts,
)

pytestmark = pytest.mark.django_db

PROMPTS = ["first words", "second words", "third words"]


class Killed(Exception):
    """Stands for the process being killed mid-batch."""


def test_an_interrupted_reencryption_resumes(acme, acme_api, django_capture_on_commit_callbacks, monkeypatch):
    capture = django_capture_on_commit_callbacks
    ids = [submit_task(acme_api, capture, prompt=prompt)["id"] for prompt in PROMPTS]
    for task_id in ids:
        run(task_id, capture)
    old_key = primary_key(acme)
    everything = stored_ciphertexts(acme)

    real = TenantCipher.reencrypt
    calls: list[bytes] = []

    def killed_in_the_second_batch(self, token):
        if len(calls) == len(TASK_COLUMNS):  # one task's values: the first batch is done
            raise Killed
        calls.append(bytes(token))
        return real(self, token)

    monkeypatch.setattr(TenantCipher, "reencrypt", killed_in_the_second_batch)
    with pytest.raises(Killed):
        reencrypt("acme", "--batch-size", "1")
    monkeypatch.setattr(TenantCipher, "reencrypt", real)

    # Stopped mid-way: the first batch committed, with its progress; both keys decrypt.
    new_key = primary_key(acme)
    assert acme.wrapped_retired_keys is not None
    assert set(acme.rekey_progress) == {"tasks.workflows", "tasks.tasks"}  # walking the tasks
    midway = stored_ciphertexts(acme)
    assert sum(decrypts(new_key, token) for token in midway) == len(TASK_COLUMNS)
    assert sum(decrypts(old_key, token) for token in midway) == len(midway) - len(TASK_COLUMNS)
    for task_id, prompt in zip(ids, PROMPTS, strict=True):
        assert acme_api.get(f"/api/v1/tasks/{task_id}").body["output"] == prompt

    out, _ = reencrypt("acme", "--batch-size", "1")

    assert out.strip() == str(len(everything) - len(TASK_COLUMNS))  # the first batch was not redone
    acme.refresh_from_db()
    assert acme.wrapped_retired_keys is None
    assert all(decrypts(new_key, token) for token in stored_ciphertexts(acme))  # the key of the first run
    for task_id, prompt in zip(ids, PROMPTS, strict=True):
        assert acme_api.get(f"/api/v1/tasks/{task_id}").body["output"] == prompt
