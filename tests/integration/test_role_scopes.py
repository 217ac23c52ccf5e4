"""The role table (apps.tenants.roles.ROLE_SCOPES) decides what a member's key may do,
at each request: the tests are generated from the table, every role by every scope."""

from __future__ import annotations

import pytest

from apps.tenants.models import ALL_SCOPES, Role
from apps.tenants.roles import ROLE_SCOPES
from apps.tenants.services import ScopeNotAllowed, issue_api_key
from tests.conftest import ApiClient
from tests.member_support import KEYS, MEMBERS, assert_error, member

pytestmark = pytest.mark.django_db

# One call per scope, and what it answers when the key holds the scope. Writing
# a task with an empty body: refused for the body (400), so past the scope check.
PROBES: dict[str, tuple[str, str, int]] = {
    "tasks:read": ("get", "/api/v1/tasks", 200),
    "tasks:write": ("post", "/api/v1/tasks", 400),
    "models:read": ("get", "/api/v1/models", 200),
    "usage:read": ("get", "/api/v1/usage", 200),
    "keys:manage": ("get", KEYS, 200),
    "members:manage": ("get", MEMBERS, 200),
}


def probe(api: ApiClient, scope: str):
    method, path, _ = PROBES[scope]
    return api.post(path, {}) if method == "post" else api.get(path)


def test_every_scope_has_a_probe_and_every_role_a_row():
    assert set(PROBES) == set(ALL_SCOPES)
    assert set(ROLE_SCOPES) == set(Role)


@pytest.mark.parametrize("scope", ALL_SCOPES)
@pytest.mark.parametrize("role", list(Role))
def test_a_members_key_holds_what_their_role_allows_now(acme, role, scope):
    # Made while an owner, with every scope; the role changes afterwards.
    alice = member(acme, "alice", Role.OWNER)
    assert set(alice.api_key.scopes) == set(ALL_SCOPES)
    alice.set_role(role)
    response = probe(alice.api, scope)
    if scope in ROLE_SCOPES[role]:
        assert response.status == PROBES[scope][2], response.body
    else:
        error = assert_error(response, 403, "insufficient_scope")
        assert scope in error["message"]


@pytest.mark.parametrize("role", list(Role))
def test_a_key_made_for_a_member_cannot_get_more_than_their_role(acme, role):
    alice = member(acme, "alice", role)
    assert set(alice.api_key.scopes) == ROLE_SCOPES[role]  # by default, all the role allows
    beyond = sorted(set(ALL_SCOPES) - ROLE_SCOPES[role])
    if not beyond:
        return
    with pytest.raises(ScopeNotAllowed) as refused:
        issue_api_key(acme, scopes=beyond, created_by=alice.user)
    assert refused.value.param == "scopes" and refused.value.scopes == beyond


@pytest.mark.parametrize("scope", ALL_SCOPES)
def test_a_removed_or_deactivated_members_key_holds_nothing(acme, scope):
    removed = member(acme, "removed", Role.OWNER)
    removed.membership.delete()
    assert_error(probe(removed.api, scope), 403, "insufficient_scope")
    member(acme, "keeper", Role.OWNER)  # the tenant keeps an owner
    deactivated = member(acme, "deactivated", Role.OWNER)
    type(deactivated.user).objects.filter(pk=deactivated.user.pk).update(is_active=False)
    assert_error(probe(deactivated.api, scope), 403, "insufficient_scope")


@pytest.mark.parametrize("scope", ALL_SCOPES)
def test_an_operators_key_speaks_for_the_tenant(acme_api, scope):
    assert probe(acme_api, scope).status == PROBES[scope][2]


def test_a_members_key_follows_their_role_in_its_own_tenant_only(acme, globex):
    # The same person, owner of globex and viewer in acme: the acme key is a viewer's.
    member(globex, "alice", Role.OWNER)
    in_acme = member(acme, "alice", Role.OWNER)
    in_acme.set_role(Role.VIEWER)
    assert_error(probe(in_acme.api, "tasks:write"), 403, "insufficient_scope")
