"""Who may call what.

Tenant endpoints: a tenant's key holding the view's scope (a paused tenant's
too: its submissions are refused where they are taken, apps.tenants.services).

The operator API (/api/v1/ops/…): active staff users, signed in to the admin
(a Django session, with CSRF enforced on writes: DRF's SessionAuthentication),
or with an operator token (``Authorization: Bearer llo_…``, from ``manage.py
create_operator_token``), holding the Django permission the admin would need
for the same action (``HasOperatorPermission``). A tenant's API key is
recognised only so it can be refused clearly: tenants never reach operator
endpoints. (Here, not in apps.security, because recognising a key and a
tenant needs this app.)
"""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.security.authentication import OperatorTokenAuthentication
from apps.tenants.authentication import ApiKeyAuthentication, TenantPrincipal
from apps.tenants.models import ApiKey, Tenant


class HasActiveTenantKey(permissions.BasePermission):
    """Authenticated by a live (unexpired, unrevoked) API key, with the scope the view needs.

    A view names its scope per action in ``required_scopes``
    (``{"list": "tasks:read", ...}``) or for every action in ``required_scope``.
    A paused tenant passes: it may still read, cancel and erase; only its new
    submissions are refused, by the services that take them
    (apps.tenants.services.refuse_if_paused), whatever the channel.
    """

    def has_permission(self, request: Request, view) -> bool:
        principal = _principal(request)
        scope = _required_scope(request, view)
        if scope and not principal.api_key.has_scope(scope):
            raise exceptions.PermissionDenied(f"this key lacks the scope {scope!r}", code="insufficient_scope")
        return True


def _required_scope(request: Request, view) -> str | None:
    by_action = getattr(view, "required_scopes", None)
    if by_action is not None:
        action = getattr(view, "action", None) or (request.method or "").lower()
        return by_action.get(action)
    return getattr(view, "required_scope", None)


def _principal(request: Request) -> TenantPrincipal:
    principal = request.user
    if not isinstance(principal, TenantPrincipal):
        raise exceptions.NotAuthenticated(
            "an API key is required: 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    return principal


def tenant_of(request: Request) -> Tenant:
    """The calling tenant; the only way views reach it (never from the body)."""
    return _principal(request).tenant


def api_key_of(request: Request) -> ApiKey:
    """The API key the request was authenticated with."""
    return _principal(request).api_key


# Session first: with no credentials at all, DRF answers as the first class
# would, and a session has no WWW-Authenticate challenge, so that is a 403.
OPERATOR_AUTHENTICATION = [authentication.SessionAuthentication, OperatorTokenAuthentication, ApiKeyAuthentication]


class IsStaffOperator(permissions.BasePermission):
    def has_permission(self, request: Request, view) -> bool:
        user = request.user
        if isinstance(user, TenantPrincipal):
            raise exceptions.PermissionDenied(
                "operator endpoints are not open to API keys; sign in to the admin as staff or use an operator token",
                code="staff_only",
            )
        if user is None or not user.is_authenticated:
            raise exceptions.NotAuthenticated(
                "sign in to the admin as a staff user, or send an operator token", code="not_authenticated"
            )
        if not (user.is_active and user.is_staff):
            raise exceptions.PermissionDenied("operator endpoints are for staff users", code="staff_only")
        return True


class HasOperatorPermission(IsStaffOperator):
    """Active staff holding the Django permission the admin would ask for the same
    action: the one rule of every operator endpoint (superusers hold them all).

    A view names the permission per HTTP method in ``operator_permissions``
    (``{"GET": "tenants.view_plan", "PATCH": "tenants.change_plan"}``); HEAD and
    OPTIONS need GET's. A method missing there is a programming error, never an
    open door. With the model permission, an operator acts on every object.
    Without it, on a view that acts on one tenant's objects (it calls
    ``check_object_permissions(request, tenant)``), a guardian object permission
    on that tenant is enough: ``view_tenant`` to read, ``change_tenant`` to
    write; so an operator can be limited to some tenants.
    """

    def has_permission(self, request: Request, view) -> bool:
        super().has_permission(request, view)
        needed = operator_permission(request, view)
        if needed is None or request.user.has_perm(needed):
            return True
        if getattr(view, "acts_on_one_tenant", False):
            return True  # decided on the tenant, in has_object_permission
        raise _lacks(needed)

    def has_object_permission(self, request: Request, view, obj) -> bool:
        needed = operator_permission(request, view)
        user = request.user
        if needed is None or user.has_perm(needed):
            return True
        if isinstance(obj, Tenant):
            on_tenant = "tenants.view_tenant" if request.method in permissions.SAFE_METHODS else "tenants.change_tenant"
            if user.has_perm(on_tenant, obj):
                return True
            raise _lacks(needed, f" (or {on_tenant!r} on the tenant {obj.slug!r})")
        raise _lacks(needed)


def operator_permission(request: Request, view) -> str | None:
    """The permission ``view`` needs for ``request``'s method ("app_label.codename");
    None for a method the view does not handle (it answers 405)."""
    by_method: Mapping[str, str] = getattr(view, "operator_permissions", {})
    method = "GET" if request.method in ("HEAD", "OPTIONS") else (request.method or "")
    if not hasattr(view, method.lower()):
        return None
    needed = by_method.get(method)
    if needed is None:
        raise ImproperlyConfigured(f"{type(view).__name__}.operator_permissions names no permission for {method}")
    return needed


def _lacks(needed: str, alternative: str = "") -> exceptions.PermissionDenied:
    return exceptions.PermissionDenied(
        f"this needs the permission {needed!r}{alternative}", code="permission_denied"
    )
