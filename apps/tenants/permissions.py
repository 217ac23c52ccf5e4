"""Who may call what: an active tenant's key holding the view's scope."""

from __future__ import annotations

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from apps.tenants.authentication import TenantPrincipal


class HasActiveTenantKey(permissions.BasePermission):
    """Authenticated by an API key of an active tenant, with the scope the view needs.

    A view names its scope per action in ``required_scopes``
    (``{"list": "tasks:read", ...}``) or for every action in ``required_scope``.
    """

    def has_permission(self, request: Request, view) -> bool:
        principal = request.user
        if not isinstance(principal, TenantPrincipal):
            raise exceptions.NotAuthenticated("an API key is required: 'Authorization: Bearer <key>'", code="missing_api_key")
        if not principal.tenant.active:
            raise exceptions.PermissionDenied("this tenant is paused", code="tenant_paused")
        scope = _required_scope(request, view)
        if scope and not principal.api_key.has_scope(scope):
            raise exceptions.PermissionDenied(f"this key lacks the scope {scope!r}", code="insufficient_scope")
        return True


def _required_scope(request: Request, view) -> str | None:
    by_action = getattr(view, "required_scopes", None)
    if by_action is not None:
        action = getattr(view, "action", None) or request.method.lower()
        return by_action.get(action)
    return getattr(view, "required_scope", None)


def tenant_of(request: Request):
    """The calling tenant; the only way views reach it (never from the body)."""
    return request.user.tenant
