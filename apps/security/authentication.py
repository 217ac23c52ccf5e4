"""``Authorization: Bearer llo_…``: an operator token, for /api/v1/ops/ only."""

from __future__ import annotations

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.core.secrets import bearer
from apps.security.models import OperatorToken
from apps.security.services import find_operator_token, is_operator_token


class InvalidOperatorToken(exceptions.APIException):
    """401 even behind SessionAuthentication: DRF would turn an AuthenticationFailed
    into a 403 there (the session class, listed first, has no challenge)."""

    status_code = 401
    default_code = "invalid_operator_token"
    default_detail = "invalid or revoked operator token"
    auth_header = "Bearer"  # read by DRF's handler: sent as WWW-Authenticate


class OperatorTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates as the token's user. Bearer values that are not operator
    tokens are left to the next class (a tenant's API key is recognised there,
    so it can be refused clearly)."""

    keyword = "Bearer"

    def authenticate(self, request: Request):
        raw = bearer(request.META.get("HTTP_AUTHORIZATION"))
        if raw is None or not is_operator_token(raw):
            return None
        token: OperatorToken | None = find_operator_token(raw)
        if token is None:
            raise InvalidOperatorToken()
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
