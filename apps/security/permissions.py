"""Who may call the operator API (/api/v1/ops/…): active staff users.

Signed in to the admin (a Django session, with CSRF enforced on writes: DRF's
SessionAuthentication), or with an operator token (``Authorization: Bearer
llo_…``, from ``manage.py create_operator_token``). A tenant's API key is
recognised only so it can be refused clearly: tenants never reach operator
endpoints.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.security.authentication import OperatorTokenAuthentication
from apps.tenants.authentication import ApiKeyAuthentication, TenantPrincipal

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
