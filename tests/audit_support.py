"""The audit log as the tests read it, and operators acting from known addresses."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client

from apps.tenants.models import AuditEvent, Membership, Tenant

# Documentation addresses (RFC 5737): no test machine has them, so finding one in
# an event proves it came from the request.
OPERATOR_ADDRESS = "203.0.113.7"
TENANT_ADDRESS = "198.51.100.20"


def events(*actions: str) -> list[AuditEvent]:
    """The events of these actions, oldest first."""
    return list(AuditEvent.objects.filter(action__in=actions).order_by("id"))


def only_event(action: str) -> AuditEvent:
    found = events(action)
    assert len(found) == 1, [(event.action, event.target, event.changes) for event in found]
    return found[0]


def signed_in_operator(username: str = "auditor", address: str = OPERATOR_ADDRESS) -> tuple[Client, Any]:
    """A superuser signed in to the admin, whose requests come from ``address``."""
    # No password: force_login needs none, and hashing one costs time.
    user = get_user_model().objects.create_superuser(username, email="", password=None)
    client = Client(REMOTE_ADDR=address)
    client.force_login(user)
    return client, user


def assert_by_operator(event: AuditEvent, user: Any, tenant: Tenant | None, address: str = OPERATOR_ADDRESS) -> None:
    assert (event.actor_kind, event.actor_name, event.actor_user_id) == ("operator", user.username, user.pk)
    assert (event.tenant_id, event.tenant_slug) == ((tenant.pk, tenant.slug) if tenant else (None, ""))
    assert event.source_address == address


def tenant_form(tenant: Tenant, **changes: Any) -> dict[str, Any]:
    """The admin's change form of ``tenant`` as it stands (its members inline), with ``changes``."""
    form: dict[str, Any] = {
        "name": tenant.name,
        "slug": tenant.slug,
        "plan": tenant.plan_id,
        "output_retention_days": tenant.output_retention_days or "",
    }
    if tenant.active:
        form["active"] = "on"
    members = list(Membership.objects.filter(tenant=tenant).order_by("pk"))
    form |= {
        "memberships-TOTAL_FORMS": len(members),
        "memberships-INITIAL_FORMS": len(members),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for index, membership in enumerate(members):
        form |= {
            f"memberships-{index}-id": membership.pk,
            f"memberships-{index}-tenant": tenant.pk,
            f"memberships-{index}-user": membership.user_id,
            f"memberships-{index}-role": membership.role,
        }
    for key, value in changes.items():
        if value is None:
            form.pop(key, None)  # an unchecked box is not sent
        else:
            form[key] = value
    return form
