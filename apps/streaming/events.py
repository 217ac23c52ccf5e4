"""Stream events as they are stored and as they go to WebSocket clients.

A task's stream is a log of events: ``chunk`` (seq counts from 1 across
retries and suspensions), ``restart`` (a new attempt begins), ``suspended``
(the generation gave its slot up at a token boundary: preempted, or its time
slice ended; apps.tasks.suspension) and ``resumed`` (it goes on where it
stopped, with the next seq), ``done`` (the task ended). The
payload is encrypted with the tenant's data key wherever the log persists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.security.crypto import TenantCipher

CHUNK = "chunk"
RESTART = "restart"
SUSPENDED = "suspended"
RESUMED = "resumed"
DONE = "done"


@dataclass(frozen=True)
class StoredEvent:
    kind: str
    seq: int
    payload: bytes  # ciphertext


def seal(cipher: TenantCipher, kind: str, seq: int, body: dict[str, Any]) -> StoredEvent:
    return StoredEvent(kind=kind, seq=seq, payload=cipher.encrypt_json(body))


def end_of(task: Any) -> dict[str, Any]:
    """The body of a task's ``done`` event, from its row's end state (the one definition)."""
    return {
        "status": task.state,
        "usage": task.usage,
        "error": {"code": task.error_code, "message": task.error_message} if task.error_code else None,
    }


def done_message(body: dict[str, Any]) -> dict[str, Any]:
    """The Contracts' last message of a stream."""
    return {"type": "done", "status": body["status"], "usage": body.get("usage"), "error": body.get("error")}


def client_message(cipher: TenantCipher, event: StoredEvent) -> dict[str, Any]:
    """The Contracts' message for a stored event."""
    body = cipher.decrypt_json(event.payload)
    if event.kind == CHUNK:
        return {"type": "chunk", "seq": event.seq, "text": body["text"]}
    if event.kind == RESTART:
        return {"type": "restart", "attempt": body["attempt"]}
    if event.kind == SUSPENDED:
        return {"type": "suspended", "reason": body["reason"]}
    if event.kind == RESUMED:
        return {"type": "resumed"}
    return done_message(body)
