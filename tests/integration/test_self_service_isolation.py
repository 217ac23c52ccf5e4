"""A tenant never sees, changes or infers another tenant's keys or members: their
ids and names are answered as unknown ones are (404, the same body)."""

from __future__ import annotations

import uuid

import pytest

from apps.tenants.models import Role
from tests.member_support import KEYS, MEMBERS, assert_error, member

pytestmark = pytest.mark.django_db


def test_another_tenants_key_is_not_found(acme, acme_api, globex_api):
    acme_key_id = acme_api.post(KEYS, {"name": "acme's", "scopes": ["tasks:read"]}).body["id"]
    unknown = str(uuid.uuid4())
    for key_id in (acme_key_id, unknown):
        for response in (globex_api.get(f"{KEYS}/{key_id}"), globex_api.delete(f"{KEYS}/{key_id}")):
            error = assert_error(response, 404, "key_not_found")
            assert error["message"] == f"no API key {key_id}"
    assert acme_api.get(f"{KEYS}/{acme_key_id}").body["revoked_at"] is None
    assert acme_key_id not in str(globex_api.get(KEYS).body)
    assert_error(globex_api.get(f"{KEYS}/not-a-uuid"), 404)


def test_another_tenants_member_is_not_found(acme, globex, acme_api, globex_api, django_user_model):
    member(acme, "alice", Role.OWNER)
    django_user_model.objects.create_user("nobody", password=None)
    for username in ("alice", "nobody", "never-existed"):
        for response in (
            globex_api.get(f"{MEMBERS}/{username}"),
            globex_api.patch(f"{MEMBERS}/{username}", {"role": "viewer"}),
            globex_api.delete(f"{MEMBERS}/{username}"),
        ):
            error = assert_error(response, 404, "member_not_found")
            assert error["message"] == f"no member named {username!r}"
    assert acme_api.get(f"{MEMBERS}/alice").body["role"] == "owner"
    assert globex_api.get(MEMBERS).body == {"object": "list", "data": []}
