"""The audit log: who did what to which tenant, from where. The only writer of AuditEvent.

Services and the admin call ``record()`` where an operator or a tenant's key
changes something security-relevant (keys, members and roles, model grants,
pausing, plans, master keys, sign-ins), inside the same transaction as the
change, so a change that rolls back leaves no event behind.

Who acted and from where come from the request being served, so that no
service has to carry them in its signature: ``AuditRequestMiddleware`` keeps
the request in a context variable for as long as it is handled, and
``record()`` reads its user (a staff user, or the ``TenantPrincipal`` of an
API key, which DRF sets on the underlying request once it authenticates) and
its address when asked. Outside a request (a management command) the actor is
"system". A caller that knows better passes ``actor`` / ``source_address``.

The address is REMOTE_ADDR: the project has no trusted-proxy setting, and a
forwarded-for header a client can forge has no place in an audit trail.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.http import HttpRequest

from apps.core.middleware import HybridMiddleware
from apps.tenants.models import ActorKind, ApiKey, AuditAction, AuditEvent, Tenant

# Names whose values must never reach the log: a guard against a careless
# ``changes`` (a model's fields passed wholesale), not the only defence.
SECRET_FIELDS = frozenset({"key_hash", "secret", "password", "token", "token_hash", "wrapped_data_key"})

_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


@dataclass(frozen=True)
class Actor:
    kind: str  # an ActorKind
    name: str = ""  # the username, or the API key's prefix
    user_id: int | None = None

    @classmethod
    def of(cls, principal: Any) -> Actor:
        """The actor behind ``request.user``: a user, an API key's principal, or nobody."""
        # An API key's TenantPrincipal (apps.tenants.authentication, which imports
        # the services, which import this module) is recognised by its key.
        api_key = getattr(principal, "api_key", None)
        if isinstance(api_key, ApiKey):
            return cls(ActorKind.API_KEY, api_key.prefix)
        if principal is not None and getattr(principal, "is_authenticated", False):
            return cls(ActorKind.OPERATOR, principal.get_username(), principal.pk)
        return ANONYMOUS


SYSTEM = Actor(ActorKind.SYSTEM)
ANONYMOUS = Actor(ActorKind.ANONYMOUS)


def record(
    action: AuditAction,
    *,
    actor: Actor | None = None,
    tenant: Tenant | None = None,
    source_address: str | None = None,
    target: str = "",
    changes: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. ``actor`` and ``source_address`` default to the current
    request's (see the module's docstring); ``changes`` is ``{field: [old, new]}``."""
    changes = dict(changes or {})
    leaked = SECRET_FIELDS.intersection(changes)
    if leaked:
        raise ValueError(f"the audit log never holds secrets; drop {sorted(leaked)} from the changes")
    request = _current_request.get()
    if actor is None:
        actor = Actor.of(getattr(request, "user", None)) if request is not None else SYSTEM
    if source_address is None and request is not None:
        source_address = client_address(request)
    return AuditEvent.objects.create(
        action=action,
        actor_kind=actor.kind,
        actor_name=actor.name[:150],
        actor_user_id=actor.user_id,
        tenant_id=tenant.pk if tenant is not None else None,
        tenant_slug=tenant.slug if tenant is not None else "",
        source_address=source_address,
        target=target[:200],
        changes=changes,
    )


def client_address(request: HttpRequest) -> str | None:
    """The request's peer address, or None when it is not an IP address (a Unix socket)."""
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def diff(before: models.Model | None, after: models.Model, fields: Iterable[str]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for those of ``fields`` whose value differs; a related
    object is named by its str(), and a new object (``before`` None) has old None."""
    changes = {}
    for field in fields:
        old = _plain(getattr(before, field)) if before is not None else None
        new = _plain(getattr(after, field))
        if old != new:
            changes[field] = [old, new]
    return changes


def _plain(value: Any) -> Any:
    """A value as the log shows it: JSON's types, a related object by its name."""
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, str | int | float | bool | list | dict) or value is None:
        return value
    return DjangoJSONEncoder().default(value)  # datetimes, UUIDs, decimals


# --- Sign-ins (django.contrib.auth's signals, connected in TenantsConfig.ready) -------


def on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record(
        AuditAction.OPERATOR_LOGIN,
        actor=Actor.of(user),
        source_address=client_address(request) if request is not None else None,
        target=f"user {user.get_username()}",
    )


def on_login_failed(
    sender: Any, credentials: Mapping[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # The username that was tried, and nothing else of the credentials: not the
    # password (Django masks it already), not whatever else a backend was given.
    username = str(credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username") or "")
    record(
        AuditAction.OPERATOR_LOGIN_FAILED,
        actor=ANONYMOUS,
        source_address=client_address(request) if request is not None else None,
        target=f"user {username}",
    )


def on_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None:  # signing out when nobody was signed in
        return
    record(
        AuditAction.OPERATOR_LOGOUT,
        actor=Actor.of(user),
        source_address=client_address(request) if request is not None else None,
        target=f"user {user.get_username()}",
    )


class AuditRequestMiddleware(HybridMiddleware):
    """Keeps the request being handled where ``record()`` finds it. Sync and async
    capable, as every middleware here must be (llmagentos.middleware)."""

    def _call(self, request: HttpRequest) -> Any:
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)

    async def _acall(self, request: HttpRequest) -> Any:
        # Sync views run in a thread with a copy of this context: they see it too.
        token = _current_request.set(request)
        try:
            return await self.get_response(request)
        finally:
            _current_request.reset(token)
