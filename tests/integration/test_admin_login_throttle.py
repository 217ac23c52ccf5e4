"""Password guessing at the admin login is throttled (django-axes): after
AXES_FAILURE_LIMIT wrong passwords for one username from one address, that
username is refused there, the right password too, with a page saying how long
to wait; another user, or the same user from another address, is not. API keys
and operator tokens, which are no password login, are never locked out."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from apps.security.services import issue_operator_token
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "a-right-password-41"


@pytest.fixture
def operators(django_user_model, settings):
    # A fast hasher: these tests check dozens of passwords, the throttle is the same.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for name in ("alice", "bob"):
        django_user_model.objects.create_user(name, password=PASSWORD, is_staff=True)


def _login(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password})


def _signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def _fail_to_the_limit(client: Client, username: str) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, username, "wrong")


def test_the_right_password_is_refused_after_too_many_wrong_ones(operators):
    browser = Client()
    _fail_to_the_limit(browser, "alice")

    refused = _login(browser, "alice", PASSWORD)

    assert refused.status_code == 429
    assert refused["Retry-After"] == str(settings.LOGIN_LOCKOUT_MINUTES * 60)
    assert f"try again in {settings.LOGIN_LOCKOUT_MINUTES} minutes" in refused.content.decode()
    assert "_auth_user_id" not in browser.session


def test_fewer_failures_than_the_limit_do_not_lock(operators):
    browser = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(browser, "alice", "wrong").status_code == 200  # the form again, with its error

    assert _signed_in(_login(browser, "alice", PASSWORD))


def test_another_user_and_another_address_are_not_locked(operators):
    _fail_to_the_limit(Client(REMOTE_ADDR="203.0.113.7"), "alice")

    assert _signed_in(_login(Client(REMOTE_ADDR="203.0.113.7"), "bob", PASSWORD))
    assert _signed_in(_login(Client(REMOTE_ADDR="198.51.100.9"), "alice", PASSWORD))


def test_operator_tokens_still_work_from_a_locked_out_address(operators):
    _fail_to_the_limit(Client(), "alice")
    token = issue_operator_token(make_operator("scripted")).secret

    assert Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/ops/workers").status_code == 200


def test_tenant_api_keys_still_work_from_a_locked_out_address(operators, acme_api):
    _fail_to_the_limit(Client(), "alice")

    assert acme_api.get("/api/v1/usage").status == 200
