"""Tenants managing their own members (/api/v1/members), with a key holding ``members:manage``.

The caller acts with its key's role (apps.tenants.roles.authority). It may
give a role no higher than its own, and touch only members whose role is no
higher than its own: an admin can neither make an owner nor demote or remove
one. A tenant always keeps an owner: the last one can be neither demoted nor
removed. Members are named by username; another tenant's member, and a user
who belongs to no tenant of the caller's, are not found alike.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet

from apps.core.errors import Conflict, InvalidInput, NotFound, PermissionRefused
from apps.tenants import audit, roles
from apps.tenants.models import ApiKey, AuditAction, Membership, Role, Tenant


def members_of(tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("created_at", "pk")


def member_of(tenant: Tenant, username: str) -> Membership:
    membership = members_of(tenant).filter(user__username=username).first()
    if membership is None:
        raise NotFound(f"no member named {username!r}", code="member_not_found")
    return membership


def add_member(caller: ApiKey, username: str, role: str) -> Membership:
    _may_give(caller, role)
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidInput(f"no user named {username!r}", code="user_not_found", param="username")
    with transaction.atomic():
        if Membership.objects.filter(tenant=caller.tenant, user=user).exists():
            raise Conflict(f"{username!r} is a member already", code="already_a_member", param="username")
        membership = Membership.objects.create(tenant=caller.tenant, user=user, role=role)
        audit.record(
            AuditAction.MEMBER_ADDED, tenant=caller.tenant, target=_target(membership), changes={"role": [None, role]}
        )
    return membership


def change_role(caller: ApiKey, username: str, role: str) -> Membership:
    _may_give(caller, role)
    with transaction.atomic():
        membership = _locked_member(caller, username)
        if membership.role != role:
            if membership.role == Role.OWNER:
                _keep_an_owner(membership, "demote")
            old = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            changes = {"role": [old, role]}
            audit.record(AuditAction.ROLE_CHANGED, tenant=caller.tenant, target=_target(membership), changes=changes)
    return membership


def remove_member(caller: ApiKey, username: str) -> None:
    with transaction.atomic():
        membership = _locked_member(caller, username)
        if membership.role == Role.OWNER:
            _keep_an_owner(membership, "remove")
        membership.delete()
        audit.record(
            AuditAction.MEMBER_REMOVED,
            tenant=caller.tenant,
            target=_target(membership),
            changes={"role": [membership.role, None]},
        )


def _may_give(caller: ApiKey, role: str) -> None:
    if roles.rank(role) > roles.rank(caller.acting_role()):
        raise PermissionRefused(
            f"a key acting as {caller.acting_role()} cannot give the role {role!r}", code="role_too_low", param="role"
        )


def _locked_member(caller: ApiKey, username: str) -> Membership:
    """The member, locked for the change, when the caller's rank reaches theirs."""
    membership = member_of(caller.tenant, username)
    # The owners, locked together: two owners demoting each other at once must
    # not leave none (SQLite serializes writers already).
    list(Membership.objects.select_for_update().filter(tenant=caller.tenant, role=Role.OWNER))
    membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    if roles.rank(membership.role) > roles.rank(caller.acting_role()):
        raise PermissionRefused(
            f"a key acting as {caller.acting_role()} cannot change an {membership.role}", code="role_too_low"
        )
    return membership


def _keep_an_owner(owner: Membership, verb: str) -> None:
    """Refuse to lose ``owner`` unless another active owner remains."""
    others = Membership.objects.filter(tenant_id=owner.tenant_id, role=Role.OWNER, user__is_active=True)
    if not others.exclude(pk=owner.pk).exists():
        raise Conflict(f"cannot {verb} the tenant's last owner", code="last_owner")


def _target(membership: Membership) -> str:
    return f"member {membership.user.get_username()}"
