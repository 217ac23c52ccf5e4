"""Stream tokens: let a browser open one task's stream without an API key.

A token is signed (apps.core.secrets.sign), names the task, its tenant and the
API key that issued it, and lasts STREAM_TOKEN_SECONDS (reconnects included).
It is honoured only while that key is usable: revoking or expiring the key
ends its stream tokens. It uses only characters allowed in a WebSocket
subprotocol, so browsers send it as ``token.<value>``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings

from apps.core.secrets import sign, unsign

PURPOSE = "stream-token"


@dataclass(frozen=True)
class StreamGrant:
    tenant_id: uuid.UUID
    api_key_id: uuid.UUID  # the key that issued the token


def issue_stream_token(task_id: uuid.UUID, tenant_id: uuid.UUID, api_key_id: uuid.UUID) -> str:
    return sign(PURPOSE, {"t": str(task_id), "n": str(tenant_id), "k": str(api_key_id)})


def grant_of_stream_token(token: str, task_id: uuid.UUID) -> StreamGrant | None:
    """Who the token was issued to, if it is valid, fresh and for this task."""
    claims = unsign(PURPOSE, token, settings.STREAM_TOKEN_SECONDS)
    if claims is None or claims.get("t") != str(task_id):
        return None
    try:
        return StreamGrant(tenant_id=uuid.UUID(claims["n"]), api_key_id=uuid.UUID(claims["k"]))
    except (KeyError, ValueError, TypeError):
        return None
