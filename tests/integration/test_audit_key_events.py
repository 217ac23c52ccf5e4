"""Each API key created, changed or revoked leaves one audit event naming who did it,
for which tenant, from where: an operator in the admin, a tenant's key through
/api/v1/keys, or an operator command (the system)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from apps.tenants.models import ApiKey
from apps.tenants.services import find_api_key, issue_api_key
from tests.audit_support import TENANT_ADDRESS, assert_by_operator, events, only_event, signed_in_operator
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    return signed_in_operator()


def test_a_key_issued_and_revoked_in_the_admin_is_recorded_once_each(operator, acme):
    client, user = operator

    form = {"tenant": acme.pk, "name": "billing", "scopes": '["tasks:read"]'}
    added = client.post("/admin/tenants/apikey/add/", form)
    assert added.status_code == 302, added.content.decode()[:2000]
    api_key = ApiKey.objects.get(name="billing")

    created = only_event("key_created")
    assert_by_operator(created, user, acme)
    assert created.target == f"key {api_key.prefix} (billing)"
    assert created.changes["name"] == [None, "billing"]

    revoke = {"action": "revoke_keys", "_selected_action": [api_key.pk]}
    client.post("/admin/tenants/apikey/", revoke)
    client.post("/admin/tenants/apikey/", revoke)  # already revoked: nothing happens, nothing recorded

    assert_by_operator(only_event("key_revoked"), user, acme)


def test_a_key_changed_in_the_admin_records_what_changed(operator, acme):
    client, user = operator
    api_key = issue_api_key(acme, name="first").api_key

    changed = client.post(
        f"/admin/tenants/apikey/{api_key.pk}/change/",
        {"name": "renamed", "expires_at_0": "2031-01-02", "expires_at_1": "03:04:05"},
    )

    assert changed.status_code == 302, changed.content.decode()[:2000]
    event = only_event("key_changed")
    assert_by_operator(event, user, acme)
    assert event.changes["name"] == ["first", "renamed"]
    old_expiry, new_expiry = event.changes["expires_at"]
    assert old_expiry is None and new_expiry.startswith("2031-01-02T03:04:05")


def test_a_tenant_key_making_and_revoking_keys_is_the_actor(acme, acme_key):
    caller = find_api_key(acme_key)
    api = ApiClient(acme_key, remote_addr=TENANT_ADDRESS)

    made = api.post("/api/v1/keys", {"name": "ci", "scopes": ["tasks:read"]})
    assert made.status == 201, made.body
    revoked = api.delete(f"/api/v1/keys/{made.body['id']}")
    assert revoked.status == 200, revoked.body

    for action in ("key_created", "key_revoked"):
        event = events(action)[-1]  # the fixture's own key was issued first, by the system
        assert (event.actor_kind, event.actor_name, event.actor_user_id) == ("api_key", caller.prefix, None)
        assert (event.tenant_id, event.tenant_slug, event.source_address) == (acme.pk, "acme", TENANT_ADDRESS)
        assert event.target == f"key {made.body['prefix']} (ci)"
    assert len(events("key_revoked")) == 1


def test_a_key_from_the_command_line_is_the_systems(acme):
    call_command("create_api_key", "acme", "--name", "cron", stdout=io.StringIO())

    event = only_event("key_created")
    assert (event.actor_kind, event.actor_name, event.actor_user_id, event.source_address) == ("system", "", None, None)
    assert (event.tenant_id, event.tenant_slug) == (acme.pk, "acme")
