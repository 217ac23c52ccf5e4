"""Members added, their roles changed and members removed are audited: in the
admin (the tenant's members inline, and the membership list) and through a
tenant's /api/v1/members with its key."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.tenants.models import Membership
from apps.tenants.services import find_api_key
from tests.audit_support import (
    TENANT_ADDRESS,
    assert_by_operator,
    events,
    only_event,
    signed_in_operator,
    tenant_form,
)
from tests.conftest import ApiClient
from tests.member_support import MEMBERS

pytestmark = pytest.mark.django_db

MEMBER_ACTIONS = ("member_added", "role_changed", "member_removed")


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice")


@pytest.fixture
def operator():
    return signed_in_operator()


def _member_events() -> list[tuple[str, str, str, dict]]:
    return [(e.action, e.tenant_slug, e.target, e.changes) for e in events(*MEMBER_ACTIONS)]


def _save_tenant(client, tenant, **changes) -> None:
    saved = client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant, **changes))
    assert saved.status_code == 302, saved.content.decode()[:3000]


def test_members_managed_in_the_tenants_inline(operator, acme, alice):
    client, user = operator
    added = {
        "memberships-TOTAL_FORMS": 1, "memberships-0-tenant": acme.pk, "memberships-0-user": alice.pk,
        "memberships-0-role": "viewer",
    }

    _save_tenant(client, acme, **added)
    _save_tenant(client, acme, **{"memberships-0-role": "admin"})
    _save_tenant(client, acme, **{"memberships-0-DELETE": "on"})

    assert not Membership.objects.filter(tenant=acme).exists()
    assert _member_events() == [
        ("member_added", "acme", "member alice", {"role": [None, "viewer"]}),
        ("role_changed", "acme", "member alice", {"role": ["viewer", "admin"]}),
        ("member_removed", "acme", "member alice", {"role": ["admin", None]}),
    ]
    for event in events(*MEMBER_ACTIONS):
        assert_by_operator(event, user, acme)


def test_members_managed_in_the_membership_list(operator, acme, alice):
    client, user = operator

    client.post("/admin/tenants/membership/add/", {"tenant": acme.pk, "user": alice.pk, "role": "member"})
    membership = Membership.objects.get(tenant=acme, user=alice)
    client.post(f"/admin/tenants/membership/{membership.pk}/change/", {"tenant": acme.pk, "user": alice.pk,
                                                                        "role": "owner"})
    client.post("/admin/tenants/membership/", {"action": "delete_selected", "_selected_action": [membership.pk],
                                               "post": "yes"})

    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert [(action, changes) for action, _, _, changes in _member_events()] == [
        ("member_added", {"role": [None, "member"]}),
        ("role_changed", {"role": ["member", "owner"]}),
        ("member_removed", {"role": ["owner", None]}),
    ]
    for event in events(*MEMBER_ACTIONS):
        assert_by_operator(event, user, acme)


def test_a_tenant_key_managing_members_is_the_actor(acme, acme_key, alice):
    api = ApiClient(acme_key, remote_addr=TENANT_ADDRESS)

    assert api.post(MEMBERS, {"username": "alice", "role": "member"}).status == 201
    assert api.patch(f"{MEMBERS}/alice", {"role": "admin"}).status == 200

    event = only_event("role_changed")
    assert (event.actor_kind, event.actor_name) == ("api_key", find_api_key(acme_key).prefix)
    assert (event.tenant_slug, event.source_address, event.target) == ("acme", TENANT_ADDRESS, "member alice")
    assert only_event("member_added").source_address == TENANT_ADDRESS
