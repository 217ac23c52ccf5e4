"""The only writers of operator-token rows: issue, find, revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from apps.core.secrets import SecretKind
from apps.security.models import OperatorToken

if TYPE_CHECKING:
    # settings.AUTH_USER_MODEL, which OperatorToken.user points to, is the stock User
    # (code that loads it at run time goes through get_user_model()).
    from django.contrib.auth.models import User

OPERATOR_TOKENS = SecretKind("llo")
# As for API keys: a hint for operators, not an audit trail.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class OperatorTokenError(ValueError):
    """A token was asked for a user who may not have one."""


@dataclass(frozen=True)
class IssuedToken:
    token: OperatorToken
    secret: str  # the full token, to show once


def issue_operator_token(user: User, *, name: str = "") -> IssuedToken:
    if not (user.is_active and user.is_staff):
        raise OperatorTokenError(f"{user.get_username()!r} is not an active staff user; operator tokens are for staff")
    new = OPERATOR_TOKENS.issue()
    token = OperatorToken.objects.create(user=user, name=name, prefix=new.public_id, token_hash=new.digest)
    return IssuedToken(token=token, secret=new.value)


def is_operator_token(raw: str) -> bool:
    """Whether ``raw`` is shaped like an operator token (not whether it is valid)."""
    return OPERATOR_TOKENS.owns(raw)


def find_operator_token(raw_token: str) -> OperatorToken | None:
    """The unrevoked token matching ``raw_token``, with its user; None otherwise.

    Whether the user may still act as an operator is the permission's call.
    """
    public_id = OPERATOR_TOKENS.public_id(raw_token)
    if public_id is None:
        return None
    token = OperatorToken.objects.select_related("user").filter(prefix=public_id).first()
    if not OPERATOR_TOKENS.matches(token.token_hash if token else None, raw_token) or token is None:
        return None
    if token.revoked_at is not None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        OperatorToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def revoke_operator_token(token: OperatorToken) -> None:
    OperatorToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
