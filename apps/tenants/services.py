"""The only writers of tenant, membership and API key rows."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.tenants.models import ALL_SCOPES, ApiKey, Tenant

KEY_PREFIX = "lla"
# last_used_at is a hint for operators, not an audit trail: writing it on every
# request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TenantError(ValueError):
    """An operator asked for something impossible (duplicate slug, bad name)."""


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the full key, to show once


def _hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def create_tenant(name: str, slug: str | None = None) -> Tenant:
    name = name.strip()
    if not name:
        raise TenantError("tenant name must not be empty")
    slug = slugify(slug or name)[:64]
    if not slug:
        raise TenantError(f"cannot derive a slug from {name!r}; give one")
    with transaction.atomic():
        if Tenant.objects.filter(slug=slug).exists():
            raise TenantError(f"a tenant with slug {slug!r} exists")
        return Tenant.objects.create(name=name, slug=slug)


def issue_api_key(
    tenant: Tenant,
    *,
    name: str = "",
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    scopes = list(ALL_SCOPES if scopes is None else scopes)
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise TenantError(f"unknown scopes: {', '.join(unknown)}")
    prefix = secrets.token_hex(6)
    raw_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=prefix,
        key_hash=_hash_key(raw_key),
        scopes=scopes,
        expires_at=expires_at,
    )
    return IssuedKey(api_key=api_key, secret=raw_key)


def revoke_api_key(api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def find_api_key(raw_key: str) -> ApiKey | None:
    """The usable key matching ``raw_key``, or None (unknown, wrong, revoked, expired)."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    api_key = ApiKey.objects.select_related("tenant").filter(prefix=parts[1]).first()
    # Compare even when no row matched, so timing does not tell a known prefix apart.
    expected = api_key.key_hash if api_key else "0" * 64
    if not hmac.compare_digest(expected, _hash_key(raw_key)) or api_key is None:
        return None
    now = timezone.now()
    if not api_key.is_usable(now):
        return None
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


def rewrap_all_data_keys() -> int:
    """Re-wrap every tenant's data key with the primary master key; returns the count."""
    from apps.security.crypto import DecryptionError, rewrap_data_key

    count = 0
    with transaction.atomic():  # all or nothing: one unreadable key re-wraps none
        for tenant in Tenant.objects.select_for_update().only("id", "slug", "wrapped_data_key"):
            try:
                rewrapped = rewrap_data_key(tenant.wrapped_data_key)
            except DecryptionError as exc:
                raise DecryptionError(f"tenant {tenant.slug!r}: {exc}") from exc
            Tenant.objects.filter(pk=tenant.pk).update(wrapped_data_key=rewrapped)
            count += 1
    return count
