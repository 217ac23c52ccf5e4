"""No audit event holds a secret: not a key's secret or hash (made in the admin, through
the API, by the command, by the service), not a password typed at the admin's login,
not the master keys; and record() refuses changes that name a secret field."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.conf import settings
from django.core.management import call_command
from django.forms.models import model_to_dict

from apps.tenants import audit
from apps.tenants.models import ApiKey, AuditAction, AuditEvent
from apps.tenants.services import find_api_key, issue_api_key
from tests.audit_support import signed_in_operator
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db

TYPED_PASSWORD = "hunter2-correct-horse"


def _every_event_as_text() -> str:
    return json.dumps([model_to_dict(event) | {"time": str(event.time)} for event in AuditEvent.objects.all()],
                      default=str)


def test_keys_made_every_way_leave_neither_their_secret_nor_their_hash(acme, acme_key):
    client, _ = signed_in_operator()
    page = client.post(
        "/admin/tenants/apikey/add/", {"tenant": acme.pk, "name": "admin-made", "scopes": '["tasks:read"]'}, follow=True
    ).content.decode()
    secrets = [acme_key, re.search(r"lla_[A-Za-z0-9_-]+", page).group(0)]
    made = ApiClient(acme_key).post("/api/v1/keys", {"name": "api-made", "scopes": ["tasks:read"]})
    secrets.append(made.body["key"])
    command_output = io.StringIO()
    call_command("create_api_key", "acme", stdout=command_output)
    secrets.append(command_output.getvalue().strip())
    secrets.append(issue_api_key(acme, name="service-made").secret)

    keys = [find_api_key(secret) for secret in secrets]
    assert all(keys) and len({key.pk for key in keys}) == 5  # five real, distinct keys
    assert len(AuditEvent.objects.filter(action="key_created")) == 5
    logged = _every_event_as_text()
    for secret, api_key in zip(secrets, keys, strict=True):
        assert api_key.prefix in logged  # the public id names the key…
        assert secret not in logged  # …its secret never appears
        assert secret.split("_", 2)[2] not in logged  # the random part (it may hold "_" itself)
        assert ApiKey.objects.get(pk=api_key.pk).key_hash not in logged


def test_a_password_typed_at_the_login_never_reaches_the_log(client, django_user_model):
    django_user_model.objects.create_user("ops", password="another-password-entirely", is_staff=True)

    client.post("/admin/login/", {"username": "ops", "password": TYPED_PASSWORD})

    assert AuditEvent.objects.filter(action="operator_login_failed").count() == 1
    assert TYPED_PASSWORD not in _every_event_as_text()


def test_master_key_rotation_logs_no_key(acme, globex):
    call_command("rotate_master_keys", stdout=io.StringIO())

    assert AuditEvent.objects.filter(action="master_key_rotated").count() == 1
    logged = _every_event_as_text()
    for master_key in settings.MASTER_KEYS:
        assert master_key not in logged


@pytest.mark.parametrize("field", ["key_hash", "password", "secret"])
def test_record_refuses_changes_that_name_a_secret_field(acme, field):
    with pytest.raises(ValueError, match="never holds secrets"):
        audit.record(AuditAction.KEY_CHANGED, tenant=acme, target="key x", changes={field: [None, "s3cr3t"]})

    assert not AuditEvent.objects.filter(action="key_changed").exists()
