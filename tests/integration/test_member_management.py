"""A tenant's members (/api/v1/members), with a members:manage key: a caller gives
no role above its own, an admin cannot demote or remove an owner, and the last
owner stays."""

from __future__ import annotations

import pytest

from apps.tenants.models import Membership, Role
from tests.member_support import MEMBERS, assert_error, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(acme):
    return member(acme, "olivia", Role.OWNER)


@pytest.fixture
def admin(acme, owner):
    return member(acme, "adam", Role.ADMIN)


def _role(username: str) -> str | None:
    return Membership.objects.filter(user__username=username).values_list("role", flat=True).first()


def test_add_change_and_remove_a_member(owner, django_user_model):
    django_user_model.objects.create_user("bob", password=None)
    added = owner.api.post(MEMBERS, {"username": "bob", "role": "viewer"})
    assert added.status == 201, added.body
    assert {key: added.body[key] for key in ("object", "username", "role")} == {
        "object": "member", "username": "bob", "role": "viewer"
    }
    assert [m["username"] for m in owner.api.get(MEMBERS).body["data"]] == ["olivia", "bob"]
    changed = owner.api.patch(f"{MEMBERS}/bob", {"role": "member"})
    assert changed.status == 200 and changed.body["role"] == "member" and _role("bob") == "member"
    assert owner.api.delete(f"{MEMBERS}/bob").status == 204
    assert _role("bob") is None
    assert_error(owner.api.get(f"{MEMBERS}/bob"), 404, "member_not_found")


def test_adding_needs_an_existing_user_not_yet_a_member(owner, admin):
    assert_error(owner.api.post(MEMBERS, {"username": "ghost", "role": "member"}), 400, "user_not_found", "username")
    assert_error(owner.api.post(MEMBERS, {"username": "adam", "role": "member"}), 409, "already_a_member", "username")
    assert _role("adam") == "admin"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"username": "bob"}, "role"),
        ({"username": "bob", "role": "superuser"}, "role"),
        ({"role": "member"}, "username"),
        ({"username": "bob", "role": "member", "tenant": "globex"}, "tenant"),
    ],
)
def test_bad_input_names_the_field(owner, django_user_model, body, param):
    django_user_model.objects.create_user("bob", password=None)
    assert_error(owner.api.post(MEMBERS, body), 400, param=param)
    assert _role("bob") is None


def test_an_admin_cannot_make_demote_or_remove_an_owner(admin, django_user_model):
    django_user_model.objects.create_user("bob", password=None)
    assert_error(admin.api.post(MEMBERS, {"username": "bob", "role": "owner"}), 403, "role_too_low", "role")
    assert _role("bob") is None
    assert_error(admin.api.patch(f"{MEMBERS}/olivia", {"role": "admin"}), 403, "role_too_low")
    assert_error(admin.api.delete(f"{MEMBERS}/olivia"), 403, "role_too_low")
    assert _role("olivia") == "owner"
    assert_error(admin.api.patch(f"{MEMBERS}/adam", {"role": "owner"}), 403, "role_too_low", "role")
    # What an admin may do: add and change members up to admin.
    assert admin.api.post(MEMBERS, {"username": "bob", "role": "admin"}).status == 201
    assert admin.api.patch(f"{MEMBERS}/bob", {"role": "viewer"}).status == 200


def test_the_last_owner_stays(acme, owner):
    assert_error(owner.api.patch(f"{MEMBERS}/olivia", {"role": "admin"}), 409, "last_owner")
    assert_error(owner.api.delete(f"{MEMBERS}/olivia"), 409, "last_owner")
    assert _role("olivia") == "owner"
    member(acme, "oscar", Role.OWNER)
    assert owner.api.delete(f"{MEMBERS}/oscar").status == 204
    assert_error(owner.api.delete(f"{MEMBERS}/olivia"), 409, "last_owner")
    member(acme, "oscar", Role.OWNER)
    assert owner.api.patch(f"{MEMBERS}/olivia", {"role": "viewer"}).status == 200
    assert _role("olivia") == "viewer"
