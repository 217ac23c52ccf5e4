"""Who may open a task's stream: a server with an API key, or a browser with a stream token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import validate_host
from django.utils import timezone

from apps.core.logs import note_tenant
from apps.core.secrets import bearer
from apps.streaming.tokens import grant_of_stream_token
from apps.tasks.models import Task
from apps.tenants.models import ApiKey, Scope
from apps.tenants.services import find_api_key

SUBPROTOCOL = "llmagentos"
TOKEN_PREFIX = "token."


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def origin_allowed(scope: dict) -> bool:
    """No Origin header (a server client): allowed. Else same host, or a configured origin."""
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    allowed = settings.STREAM_ALLOWED_ORIGINS
    if "*" in allowed or origin in allowed:
        return True
    origin_host = urlsplit(origin).netloc
    host = _header(scope, b"host") or ""
    if origin_host and origin_host == host:
        return True
    return bool(origin_host) and validate_host(origin_host.rsplit(":", 1)[0], settings.ALLOWED_HOSTS)


@dataclass(frozen=True)
class StreamAccess:
    task: Task
    api_key: ApiKey  # the caller's key; for a stream token, the key that issued it

    @property
    def may_cancel(self) -> bool:
        return self.api_key.has_scope(Scope.TASKS_WRITE)


@database_sync_to_async
def authorised_task(scope: dict, task_id: uuid.UUID) -> StreamAccess | None:
    """The task and the key that reaches it, when the caller may read it; None for
    a missing task and another tenant's alike (both are refused the same way)."""
    api_key = _key_from_header(scope) or _key_from_token(scope, task_id)
    if api_key is None:  # a paused tenant still follows its tasks (running ones finish)
        return None
    note_tenant(api_key.tenant.slug)  # the session's access line names who opened it
    task = Task.objects.for_tenant(api_key.tenant).select_related("tenant", "model").filter(pk=task_id).first()
    return StreamAccess(task=task, api_key=api_key) if task is not None else None


def _key_from_header(scope: dict) -> ApiKey | None:
    raw_key = bearer(_header(scope, b"authorization"))
    if raw_key is None:
        return None
    api_key = find_api_key(raw_key)
    if api_key is None or not api_key.has_scope(Scope.TASKS_READ):
        return None
    return api_key


def _key_from_token(scope: dict, task_id: uuid.UUID) -> ApiKey | None:
    for protocol in scope.get("subprotocols", []):
        if not protocol.startswith(TOKEN_PREFIX):
            continue
        grant = grant_of_stream_token(protocol[len(TOKEN_PREFIX):], task_id)
        if grant is None:
            continue
        api_key = ApiKey.objects.select_related("tenant").filter(pk=grant.api_key_id, tenant_id=grant.tenant_id).first()
        # The issuing key must still be usable: revoking it ends its stream tokens.
        if api_key is not None and api_key.is_usable(timezone.now()) and api_key.has_scope(Scope.TASKS_READ):
            return api_key
    return None
