"""A key never makes a stronger key: not more scopes than it holds (its own, cut to
its creator's role), not a later expiry; an admin's key cannot revoke an owner's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.tenants.models import ApiKey, Role
from apps.tenants.services import issue_api_key
from tests.conftest import ApiClient
from tests.member_support import KEYS, assert_error, member

pytestmark = pytest.mark.django_db


def test_a_key_cannot_grant_scopes_it_lacks(acme):
    manager = ApiClient(issue_api_key(acme, scopes=["tasks:read", "keys:manage"]).secret)
    refused = manager.post(KEYS, {"name": "x", "scopes": ["tasks:read", "tasks:write", "members:manage"]})
    error = assert_error(refused, 403, "scope_not_allowed", param="scopes")
    assert "tasks:write" in error["message"] and "members:manage" in error["message"]
    assert "tasks:read" not in error["message"]
    assert ApiKey.objects.count() == 1


def test_a_key_made_by_a_members_key_follows_that_members_role(acme):
    member(acme, "owner", Role.OWNER)
    admin = member(acme, "admin", Role.ADMIN)
    made = admin.api.post(KEYS, {"name": "child", "scopes": ["keys:manage", "tasks:write"]})
    assert made.status == 201, made.body
    assert made.body["created_by"] == "admin"
    child = ApiClient(made.body["key"])
    assert child.get(KEYS).status == 200
    admin.set_role(Role.MEMBER)  # demoted: the key it made loses keys:manage too
    assert_error(child.get(KEYS), 403, "insufficient_scope")
    assert child.post("/api/v1/tasks", {}).status == 400  # tasks:write is a member's
    assert_error(admin.api.post(KEYS, {"name": "x", "scopes": ["tasks:read"]}), 403, "insufficient_scope")


def test_a_key_cannot_outlive_the_key_that_makes_it(acme):
    ends = timezone.now() + timedelta(days=1)
    manager = ApiClient(issue_api_key(acme, expires_at=ends).secret)
    for expires_at in (None, (ends + timedelta(seconds=1)).isoformat()):
        refused = manager.post(KEYS, {"name": "x", "scopes": ["tasks:read"], "expires_at": expires_at})
        assert_error(refused, 403, "expiry_not_allowed", param="expires_at")
    within = manager.post(KEYS, {"name": "x", "scopes": ["tasks:read"], "expires_at": ends.isoformat()})
    assert within.status == 201, within.body


def test_an_admins_key_cannot_revoke_an_owners(acme, acme_key):
    owner = member(acme, "owner", Role.OWNER)
    admin = member(acme, "admin", Role.ADMIN)
    operators = ApiKey.objects.get(created_by=None)
    for stronger in (owner.api_key, operators):
        assert_error(admin.api.delete(f"{KEYS}/{stronger.id}"), 403, "role_too_low")
        assert ApiClient(acme_key).get("/api/v1/tasks").status == 200
    assert owner.api.get(KEYS).status == 200
    assert owner.api.delete(f"{KEYS}/{admin.api_key.id}").status == 200
    assert_error(admin.api.get(KEYS), 401, "invalid_api_key")
