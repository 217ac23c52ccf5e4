"""Stream tokens: let a browser open one task's stream without an API key.

A token is signed (SECRET_KEY), names the task and its tenant, and lasts
STREAM_TOKEN_SECONDS (reconnects included). It uses only characters allowed in
a WebSocket subprotocol, so browsers send it as ``token.<value>``.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core import signing

_SALT = "llmagentos.stream-token"


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=_SALT, sep=".")


def issue_stream_token(task_id: uuid.UUID, tenant_id: uuid.UUID) -> str:
    return _signer().sign_object({"t": str(task_id), "n": str(tenant_id)})


def tenant_for_stream_token(token: str, task_id: uuid.UUID) -> uuid.UUID | None:
    """The tenant the token was issued to, if it is valid, fresh and for this task."""
    try:
        claims = _signer().unsign_object(token, max_age=settings.STREAM_TOKEN_SECONDS)
    except (signing.BadSignature, ValueError):
        return None
    if claims.get("t") != str(task_id):
        return None
    try:
        return uuid.UUID(claims["n"])
    except (KeyError, ValueError):
        return None
