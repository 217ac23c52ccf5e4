"""Key rotations are audited as the system's acts: re-wrapping the tenants' data keys
(manage.py rotate_master_keys) once, saying how many it re-wrapped (a failed run
records nothing); giving a tenant a new data key (--reencrypt SLUG) once per new key."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from tests.audit_support import events, only_event

pytestmark = pytest.mark.django_db


def test_a_rotation_is_one_event_of_the_system(acme, globex):
    call_command("rotate_master_keys", stdout=io.StringIO())

    event = only_event("master_key_rotated")
    assert (event.actor_kind, event.actor_name, event.source_address) == ("system", "", None)
    assert (event.tenant_id, event.target, event.changes) == (None, "2 tenant data keys re-wrapped", {})


def test_a_rotation_that_fails_records_nothing(acme, settings):
    settings.MASTER_KEYS = [Fernet.generate_key().decode()]  # the old key dropped too soon: acme's is unreadable

    with pytest.raises(CommandError):
        call_command("rotate_master_keys", stdout=io.StringIO())

    assert events("master_key_rotated") == []


def test_each_new_data_key_of_a_tenant_is_one_event(acme, globex):
    call_command("rotate_master_keys", "--reencrypt", "acme", stdout=io.StringIO(), stderr=io.StringIO())

    event = only_event("data_key_replaced")
    assert (event.actor_kind, event.tenant_id, event.tenant_slug) == ("system", acme.pk, "acme")
    assert event.target == "tenant acme data key"

    call_command("rotate_master_keys", "--reencrypt", "acme", stdout=io.StringIO(), stderr=io.StringIO())
    assert [e.tenant_slug for e in events("data_key_replaced")] == ["acme", "acme"]  # finished: a new key again
