"""Sign-ins to the admin are audited: who signed in and from where; for a failed
try, the username tried and the address (never the password); signing out too."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.audit_support import OPERATOR_ADDRESS, only_event

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-operator-password"


@pytest.fixture
def ops(django_user_model):
    return django_user_model.objects.create_user("ops", password=PASSWORD, is_staff=True)


@pytest.fixture
def browser() -> Client:
    return Client(REMOTE_ADDR=OPERATOR_ADDRESS)


def test_a_sign_in_and_out_records_the_operator_and_address(ops, browser):
    signed_in = browser.post("/admin/login/", {"username": "ops", "password": PASSWORD})
    assert signed_in.status_code == 302, signed_in.content.decode()[:2000]
    browser.post("/admin/logout/")

    for action in ("operator_login", "operator_logout"):
        event = only_event(action)
        assert (event.actor_kind, event.actor_name, event.actor_user_id) == ("operator", "ops", ops.pk)
        assert (event.source_address, event.target, event.tenant_id) == (OPERATOR_ADDRESS, "user ops", None)


def test_a_failed_sign_in_records_the_username_tried_and_the_address(ops, browser):
    refused = browser.post("/admin/login/", {"username": "ops", "password": "wrong"})
    assert refused.status_code == 200  # the form again

    event = only_event("operator_login_failed")
    assert (event.actor_kind, event.actor_name, event.actor_user_id) == ("anonymous", "", None)
    assert (event.source_address, event.target, event.changes) == (OPERATOR_ADDRESS, "user ops", {})


def test_a_sign_in_as_nobody_is_recorded_too(browser):
    browser.post("/admin/login/", {"username": "no-such-user", "password": "guess"})

    assert only_event("operator_login_failed").target == "user no-such-user"
