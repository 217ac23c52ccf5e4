"""Audit events for the rows the admin's forms write themselves: tenants, memberships,
a key's name and expiry, shared plans. (A tenant's deletion goes through
apps.tenants.data_keys.delete_tenant, which records its own.)

The services record their own changes (apps.tenants.services, .members, .keys);
the stock admin forms save rows directly, so the ModelAdmins call these with
the row as it was before (None: a new row) and as it is now.
"""

from __future__ import annotations

from apps.tenants import audit
from apps.tenants.models import ApiKey, AuditAction, Membership, Plan, Tenant
from apps.tenants.services import KEY_AUDIT_FIELDS, key_target, record_plan_change

# What a tenant_changed event reports (active and plan have events of their own).
TENANT_FIELDS = ("name", "slug", "output_retention_days")


def tenant_saved(before: Tenant | None, tenant: Tenant) -> None:
    target = f"tenant {tenant.slug}"
    if before is None:
        changes = audit.diff(None, tenant, ("name", "slug", "plan", "active"))
        audit.record(AuditAction.TENANT_CREATED, tenant=tenant, target=target, changes=changes)
        return
    if before.active != tenant.active:
        action = AuditAction.TENANT_RESUMED if tenant.active else AuditAction.TENANT_PAUSED
        audit.record(action, tenant=tenant, target=target, changes={"active": [before.active, tenant.active]})
    if before.plan_id != tenant.plan_id:
        record_plan_change(tenant, before.plan, tenant.plan)
    changes = audit.diff(before, tenant, TENANT_FIELDS)
    if changes:
        audit.record(AuditAction.TENANT_CHANGED, tenant=tenant, target=target, changes=changes)


def plan_saved(before: Plan, plan: Plan) -> None:
    """A named plan edited: it changes for every tenant on it (no one tenant's event)."""
    record_plan_change(None, before, plan)


def membership_saved(before: Membership | None, membership: Membership) -> None:
    if before is not None and (before.user_id, before.tenant_id) == (membership.user_id, membership.tenant_id):
        if before.role != membership.role:
            audit.record(
                AuditAction.ROLE_CHANGED,
                tenant=membership.tenant,
                target=_member(membership),
                changes={"role": [before.role, membership.role]},
            )
        return
    if before is not None:  # the row now names another user or tenant: that one left
        membership_removed(before)
    audit.record(
        AuditAction.MEMBER_ADDED,
        tenant=membership.tenant,
        target=_member(membership),
        changes={"role": [None, membership.role]},
    )


def membership_removed(membership: Membership) -> None:
    audit.record(
        AuditAction.MEMBER_REMOVED,
        tenant=membership.tenant,
        target=_member(membership),
        changes={"role": [membership.role, None]},
    )


def key_changed(before: ApiKey, api_key: ApiKey) -> None:
    changes = audit.diff(before, api_key, KEY_AUDIT_FIELDS)
    if changes:
        audit.record(AuditAction.KEY_CHANGED, tenant=api_key.tenant, target=key_target(api_key), changes=changes)


def _member(membership: Membership) -> str:
    return f"member {membership.user.get_username()}"  # as apps.tenants.members names them
