"""``manage.py create_api_key SLUG --for-user USERNAME``: a member's key, with the
scopes of their role, which it follows from then on."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from apps.tenants.models import ApiKey, Membership, Role
from apps.tenants.roles import ROLE_SCOPES
from apps.tenants.services import find_api_key

pytestmark = pytest.mark.django_db


def _create(*args: str) -> str:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_a_members_key_has_their_roles_scopes_and_follows_it(acme, django_user_model):
    user = django_user_model.objects.create_user("vera", password=None)
    Membership.objects.create(tenant=acme, user=user, role=Role.VIEWER)
    api_key = find_api_key(_create("acme", "--for-user", "vera"))
    assert api_key is not None and api_key.created_by == user
    assert set(api_key.scopes) == ROLE_SCOPES[Role.VIEWER]
    Membership.objects.filter(user=user).update(role=Role.OWNER)
    assert _reread(api_key).effective_scopes() == ROLE_SCOPES[Role.VIEWER]  # granted as a viewer: never more
    Membership.objects.filter(user=user).delete()
    assert _reread(api_key).effective_scopes() == frozenset()


def _reread(api_key: ApiKey) -> ApiKey:
    return ApiKey.objects.get(pk=api_key.pk)


def test_without_a_user_the_key_is_an_operators(acme):
    api_key = find_api_key(_create("acme"))
    assert api_key is not None and api_key.created_by is None
    assert api_key.effective_scopes() == ROLE_SCOPES[Role.OWNER]


@pytest.mark.parametrize("username", ["nobody", "outsider"])
def test_an_unknown_user_or_a_non_member_is_refused(acme, django_user_model, username):
    django_user_model.objects.create_user("outsider", password=None)
    with pytest.raises(CommandError, match=username if username == "nobody" else "not an active member"):
        _create("acme", "--for-user", username)
