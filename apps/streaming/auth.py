"""Who may open a task's stream: a server with an API key, or a browser with a stream token."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import validate_host

from apps.streaming.tokens import tenant_for_stream_token
from apps.tasks.models import Task
from apps.tenants.models import Scope, Tenant
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


@database_sync_to_async
def authorised_task(scope: dict, task_id: uuid.UUID) -> Task | None:
    """The task, when the caller may read it; None for a missing task and another
    tenant's alike (both are refused the same way)."""
    tenant = _tenant_from_header(scope) or _tenant_from_token(scope, task_id)
    if tenant is None or not tenant.active:
        return None
    return Task.objects.for_tenant(tenant).select_related("tenant", "model").filter(pk=task_id).first()


def _tenant_from_header(scope: dict) -> Tenant | None:
    header = _header(scope, b"authorization") or ""
    scheme, _, raw_key = header.partition(" ")
    if scheme.lower() != "bearer" or not raw_key.strip():
        return None
    api_key = find_api_key(raw_key.strip())
    if api_key is None or not api_key.has_scope(Scope.TASKS_READ):
        return None
    return api_key.tenant


def _tenant_from_token(scope: dict, task_id: uuid.UUID) -> Tenant | None:
    for protocol in scope.get("subprotocols", []):
        if protocol.startswith(TOKEN_PREFIX):
            tenant_id = tenant_for_stream_token(protocol[len(TOKEN_PREFIX):], task_id)
            if tenant_id is not None:
                return Tenant.objects.filter(pk=tenant_id).first()
    return None
