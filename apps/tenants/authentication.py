"""API key authentication: ``Authorization: Bearer <key>``; the tenant comes from the key."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.core.secrets import bearer
from apps.tenants.models import ApiKey, Tenant
from apps.tenants.services import find_api_key


@dataclass(frozen=True)
class TenantPrincipal:
    """Who is calling: request.user for API-key requests."""

    tenant: Tenant
    api_key: ApiKey
    is_authenticated: bool = True
    is_staff: bool = False

    @property
    def pk(self):  # DRF throttling and logging read user.pk
        return self.api_key.pk


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TenantPrincipal, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        raw_key = bearer(header)
        if raw_key is None:
            raise exceptions.AuthenticationFailed(
                "malformed Authorization header; expected 'Bearer <api key>'", code="invalid_api_key"
            )
        api_key = find_api_key(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed(
                "invalid, revoked or expired API key", code="invalid_api_key"
            )
        return TenantPrincipal(tenant=api_key.tenant, api_key=api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when no key was given.
        return self.keyword
