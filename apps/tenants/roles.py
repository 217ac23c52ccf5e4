"""What a tenant's members may do: the role table, the one place it is written.

A person acts on the API through keys. A key made by a member (``ApiKey.created_by``)
carries the scopes it was given, but holds at any moment only those its
creator's *current* role allows (``effective_scopes``): demote the member and
their keys lose what the new role lacks; remove them (or deactivate the user)
and their keys hold nothing. The check runs at request time, in
``ApiKey.has_scope``, which every tenant endpoint and stream goes through.

A key without a creator was issued by an operator (``manage.py create_api_key``,
the admin): it speaks for the tenant itself, with an owner's authority.

docs/api.md ("Roles and scopes") shows the same table to people; its tests are
generated from ``ROLE_SCOPES`` (tests/integration/test_role_scopes.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db import models


class Scope(models.TextChoices):
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    MODELS_READ = "models:read"
    USAGE_READ = "usage:read"
    KEYS_MANAGE = "keys:manage"
    MEMBERS_MANAGE = "members:manage"


ALL_SCOPES = [scope.value for scope in Scope]


class Role(models.TextChoices):
    """Highest first (ROLE_RANK)."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


_READ = frozenset({Scope.TASKS_READ, Scope.MODELS_READ, Scope.USAGE_READ})

# The table. Owners and admins hold the same scopes; what tells them apart is
# rank (below): an admin cannot make, demote or remove an owner, nor revoke a
# key an owner (or an operator) made.
ROLE_SCOPES: Mapping[str, frozenset[str]] = {
    Role.OWNER: frozenset(ALL_SCOPES),
    Role.ADMIN: frozenset(ALL_SCOPES),
    Role.MEMBER: _READ | {Scope.TASKS_WRITE},
    Role.VIEWER: _READ,
}

ROLE_RANK: Mapping[str, int] = {Role.OWNER: 3, Role.ADMIN: 2, Role.MEMBER: 1, Role.VIEWER: 0}
NO_ROLE_RANK = -1  # a creator no longer in the tenant


def authority(made_by_operator: bool, creator_role: str | None) -> str | None:
    """The role a key acts with: its creator's current role; an owner's for an
    operator-issued key; None when its creator no longer belongs to the tenant."""
    return Role.OWNER if made_by_operator else creator_role


def role_scopes(role: str | None) -> frozenset[str]:
    return ROLE_SCOPES.get(role, frozenset()) if role is not None else frozenset()


def effective_scopes(granted: Iterable[str], role: str | None) -> frozenset[str]:
    """What a key given ``granted`` may do while it acts with ``role``."""
    return frozenset(granted) & role_scopes(role)


def rank(role: str | None) -> int:
    return ROLE_RANK.get(role, NO_ROLE_RANK) if role is not None else NO_ROLE_RANK
