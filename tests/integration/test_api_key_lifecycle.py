"""A tenant's own keys (/api/v1/keys): made with a keys:manage key, the secret
shown once, only its prefix and hash kept; it works until revoked or expired."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.secrets import digest
from apps.tenants.models import ApiKey
from tests.conftest import ApiClient
from tests.member_support import KEYS, assert_error

pytestmark = pytest.mark.django_db

LISTED_FIELDS = {
    "id", "object", "name", "prefix", "scopes", "effective_scopes", "created_by",
    "created_at", "expires_at", "last_used_at", "revoked_at",
}


def _create(api: ApiClient, **body) -> dict:
    created = api.post(KEYS, {"name": "reader", "scopes": ["tasks:read"], **body})
    assert created.status == 201, created.body
    return created.body


def test_the_secret_is_shown_once_and_only_its_prefix_and_hash_are_kept(acme_api):
    created = _create(acme_api)
    secret = created.pop("key")
    assert set(created) == LISTED_FIELDS
    assert secret.startswith(f"lla_{created['prefix']}_")
    row = ApiKey.objects.get(pk=created["id"])
    assert row.prefix == created["prefix"] and row.key_hash == digest(secret)
    stored = [str(getattr(row, field.attname)) for field in ApiKey._meta.concrete_fields]
    assert not any(secret.rsplit("_", 1)[1] in value for value in stored)
    listed = acme_api.get(KEYS)
    assert listed.status == 200
    for shown in (*listed.body["data"], acme_api.get(f"{KEYS}/{created['id']}").body):
        assert set(shown) == LISTED_FIELDS, shown
        assert secret not in str(shown) and row.key_hash not in str(shown)
    assert created["id"] in [key["id"] for key in listed.body["data"]]


def test_the_new_key_works_with_its_scopes_only(acme_api):
    new_key = ApiClient(_create(acme_api)["key"])
    assert new_key.get("/api/v1/tasks").status == 200
    assert_error(new_key.post("/api/v1/tasks", {"model": "echo", "prompt": "hi"}), 403, "insufficient_scope")
    assert_error(new_key.get(KEYS), 403, "insufficient_scope")


def test_a_revoked_key_is_refused_and_stays_listed(acme_api):
    created = _create(acme_api)
    new_key = ApiClient(created["key"])
    revoked = acme_api.delete(f"{KEYS}/{created['id']}")
    assert revoked.status == 200, revoked.body
    assert revoked.body["revoked_at"] is not None
    assert_error(new_key.get("/api/v1/tasks"), 401, "invalid_api_key")
    again = acme_api.delete(f"{KEYS}/{created['id']}")
    assert again.status == 200 and again.body["revoked_at"] == revoked.body["revoked_at"]
    assert acme_api.get(f"{KEYS}/{created['id']}").body["revoked_at"] == revoked.body["revoked_at"]


def test_an_expired_key_is_refused(acme_api):
    created = _create(acme_api, expires_at=(timezone.now() + timedelta(days=1)).isoformat())
    assert created["expires_at"] is not None
    new_key = ApiClient(created["key"])
    assert new_key.get("/api/v1/tasks").status == 200
    ApiKey.objects.filter(pk=created["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(new_key.get("/api/v1/tasks"), 401, "invalid_api_key")


def test_a_wrong_secret_is_refused(acme_api):
    secret = _create(acme_api)["key"]
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert_error(ApiClient(wrong).get("/api/v1/tasks"), 401, "invalid_api_key")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"scopes": ["tasks:read"]}, "name"),
        ({"name": "x"}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["tasks:delete"]}, "scopes.0"),
        ({"name": "x", "scopes": "tasks:read"}, "scopes"),
        ({"name": "x", "scopes": ["tasks:read"], "expires_at": "soon"}, "expires_at"),
        ({"name": "x", "scopes": ["tasks:read"], "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "scopes": ["tasks:read"], "secret": "mine"}, "secret"),
    ],
)
def test_bad_input_names_the_field(acme_api, body, param):
    assert_error(acme_api.post(KEYS, body), 400, param=param)
    assert ApiKey.objects.count() == 1  # the fixture's key only
