"""Tenants managing their own API keys (/api/v1/keys), with a key holding ``keys:manage``.

A key never makes one stronger than itself: the new key's scopes must be
among the caller's effective scopes (its own, cut to its creator's role),
it expires no later than the caller does, and it is made for the caller's
creator (``created_by``), so it keeps following that member's role. An
operator's key (no creator) makes operator keys.

Revoking is for keys made by someone of the caller's rank or below: an
admin's key cannot revoke an owner's (or an operator's) key.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from apps.core.errors import InvalidInput, NotFound, PermissionRefused
from apps.tenants import roles
from apps.tenants.models import ApiKey, Tenant
from apps.tenants.services import IssuedKey, ScopeNotAllowed, checked_scopes, issue_api_key, revoke_api_key


def keys_of(tenant: Tenant) -> QuerySet[ApiKey]:
    """The tenant's keys, revoked ones too, newest first: the only way the API reaches them."""
    return ApiKey.objects.filter(tenant=tenant).with_creator_role().select_related("created_by")


def key_of(tenant: Tenant, key_id: uuid.UUID) -> ApiKey:
    """One of the tenant's keys; another tenant's key is not found, alike."""
    api_key = keys_of(tenant).filter(pk=key_id).first()
    if api_key is None:
        raise NotFound(f"no API key {key_id}", code="key_not_found")
    return api_key


def create_key(caller: ApiKey, *, name: str, scopes: list[str], expires_at: datetime | None) -> IssuedKey:
    scopes = checked_scopes(scopes)
    beyond = sorted(set(scopes) - caller.effective_scopes())
    if beyond:
        raise ScopeNotAllowed("this key", beyond)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future", param="expires_at")
    if caller.expires_at is not None and (expires_at is None or expires_at > caller.expires_at):
        raise PermissionRefused(
            f"this key expires at {caller.expires_at.isoformat()}; a key it makes must expire by then",
            code="expiry_not_allowed",
            param="expires_at",
        )
    # issue_api_key records the key_created audit event (with this key as the actor).
    return issue_api_key(caller.tenant, name=name, scopes=scopes, expires_at=expires_at, created_by=caller.created_by)


def revoke_key(caller: ApiKey, key_id: uuid.UUID) -> ApiKey:
    """Revoke one of the caller's tenant's keys (again: no change); returns it as it is now."""
    api_key = key_of(caller.tenant, key_id)
    if roles.rank(api_key.acting_role()) > roles.rank(caller.acting_role()):
        raise PermissionRefused(
            f"a key acting as {caller.acting_role()} cannot revoke a key made by an {api_key.acting_role()}",
            code="role_too_low",
        )
    revoke_api_key(api_key)  # records the key_revoked audit event, when it was not revoked before
    return key_of(caller.tenant, key_id)

