"""The only writers of operator-token rows: issue, find, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from apps.security.models import OperatorToken

TOKEN_PREFIX = "llo"
# As for API keys: a hint for operators, not an audit trail.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class OperatorTokenError(ValueError):
    """A token was asked for a user who may not have one."""


@dataclass(frozen=True)
class IssuedToken:
    token: OperatorToken
    secret: str  # the full token, to show once


def _hash(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def issue_operator_token(user: AbstractBaseUser, *, name: str = "") -> IssuedToken:
    if not (user.is_active and user.is_staff):
        raise OperatorTokenError(f"{user.get_username()!r} is not an active staff user; operator tokens are for staff")
    prefix = secrets.token_hex(6)
    raw_token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    token = OperatorToken.objects.create(user=user, name=name, prefix=prefix, token_hash=_hash(raw_token))
    return IssuedToken(token=token, secret=raw_token)


def is_operator_token(raw: str) -> bool:
    """Whether ``raw`` is shaped like an operator token (not whether it is valid)."""
    return raw.startswith(f"{TOKEN_PREFIX}_")


def find_operator_token(raw_token: str) -> OperatorToken | None:
    """The unrevoked token matching ``raw_token``, with its user; None otherwise.

    Whether the user may still act as an operator is the permission's call.
    """
    parts = raw_token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    token = OperatorToken.objects.select_related("user").filter(prefix=parts[1]).first()
    # Compare even when no row matched, so timing does not tell a known prefix apart.
    expected = token.token_hash if token else "0" * 64
    if not hmac.compare_digest(expected, _hash(raw_token)) or token is None or token.revoked_at is not None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        OperatorToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def revoke_operator_token(token: OperatorToken) -> None:
    OperatorToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
