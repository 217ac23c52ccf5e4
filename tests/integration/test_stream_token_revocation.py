"""A stream token is bound to the API key that issued it: revoking that key ends
the token, even within its 5 minutes (Contracts, WebSocket stream auth).
"""

from __future__ import annotations

import pytest

from apps.tenants.services import issue_api_key, revoke_api_key
from tests.conftest import ApiClient
from tests.integration.stream_support import handshake

# The handshake's auth reads the database from another thread: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_revoking_the_issuing_key_ends_its_stream_tokens(acme, acme_key):
    browser_backend = issue_api_key(acme, name="issues stream tokens")
    api = ApiClient(browser_backend.secret)
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": "watched from a browser"})
    assert created.status == 201, created.body
    task_id = created.body["id"]
    token = api.post(f"/api/v1/tasks/{task_id}/stream-token").body["token"]
    assert handshake(task_id, stream_token=token).accepted

    revoke_api_key(browser_backend.api_key)

    assert not handshake(task_id, stream_token=token).accepted
    # The tenant's other keys are untouched: the task's stream itself is still open to them.
    assert handshake(task_id, key=acme_key).accepted
