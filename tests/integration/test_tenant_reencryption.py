"""``manage.py rotate_master_keys --reencrypt SLUG`` moves everything a tenant
stored (tasks, workflows, stream events, in the database or Redis log) to a
fresh data key and drops the old one; the platform reads it all as before,
and the blind indexes (Idempotency-Key replay, client_ref lookup) still match."""

from __future__ import annotations

import pytest

from apps.streaming.events import CHUNK, client_message
from tests.integration.graph_support import TASKS, WORKFLOWS, node, run, submit_workflow
from tests.integration.rekey_support import decrypts, primary_key, reencrypt, stored_ciphertexts, stream_events

pytestmark = pytest.mark.django_db

BODY = {"model": "echo", "prompt": "ship the parcel to 12 Elm Street", "client_ref": "order-9",
        "metadata": {"desk": "north"}}


def test_reencryption_moves_every_value_to_a_new_key(
    acme, globex, acme_api, globex_api, stream_log_backend, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    with capture(execute=True):
        created = acme_api.post(TASKS, BODY, **{"Idempotency-Key": "parcel-1"})
    assert created.status == 201, created.body
    task_id = created.body["id"]
    run(task_id, capture)
    nodes = submit_workflow(acme_api, [node("a", "alpha"), node("b", "{{a.output}} beta", ["a"])], capture)
    run(nodes["a"], capture)
    run(nodes["b"], capture)
    with capture(execute=True):
        other = globex_api.post(TASKS, {"model": "echo", "prompt": "globex's own"})
    run(other.body["id"], capture)

    old_key = primary_key(acme)
    before = stored_ciphertexts(acme)
    assert before and all(decrypts(old_key, token) for token in before)
    globex_before = stored_ciphertexts(globex)

    out, err = reencrypt("acme", "--batch-size", "2")

    assert out.strip() == str(len(before))  # the count, alone on stdout
    assert "re-encrypting acme" in err  # the progress bar
    acme.refresh_from_db()
    assert acme.wrapped_retired_keys is None  # the old key is gone
    assert acme.rekey_progress == {}
    new_key = primary_key(acme)
    after = stored_ciphertexts(acme)
    assert len(after) == len(before)
    assert all(decrypts(new_key, token) and not decrypts(old_key, token) for token in after)
    assert stored_ciphertexts(globex) == globex_before  # another tenant's data is not touched

    # The platform reads it all with the new key alone.
    shown = acme_api.get(f"{TASKS}/{task_id}").body
    assert (shown["input"]["prompt"], shown["output"]) == (BODY["prompt"], BODY["prompt"])
    assert (shown["client_ref"], shown["metadata"]) == ("order-9", {"desk": "north"})
    workflow_id = acme_api.get(f"{TASKS}/{nodes['a']}").body["workflow"]
    workflow = acme_api.get(f"{WORKFLOWS}/{workflow_id}").body
    assert {name: t["id"] for name, t in workflow["tasks"].items()} == nodes
    assert acme_api.get(f"{TASKS}/{nodes['b']}").body["output"] == "alpha beta"
    texts = [client_message(acme.cipher, event)["text"] for event in stream_events(task_id) if event.kind == CHUNK]
    assert "".join(texts) == BODY["prompt"]
    # The blind indexes made before the rotation still match.
    replay = acme_api.post(TASKS, BODY, **{"Idempotency-Key": "parcel-1"})
    assert (replay.status, replay.body["id"], replay.headers.get("Idempotent-Replayed")) == (201, task_id, "true")
    found = acme_api.get(TASKS, {"client_ref": "order-9"}).body
    assert [task["id"] for task in found["results"]] == [task_id]

