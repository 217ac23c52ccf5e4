"""An admin action that changes rows needs the change permission, as the edit
form does: revoking tenants' API keys or operator tokens is not open to an
operator who may only view them."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.security.models import OperatorToken
from apps.security.services import issue_operator_token
from apps.tenants.models import ApiKey
from apps.tenants.services import issue_api_key
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

CASES = [
    # (changelist, action, view permission, change permission)
    ("/admin/tenants/apikey/", "revoke_keys", "tenants.view_apikey", "tenants.change_apikey"),
    ("/admin/security/operatortoken/", "revoke_tokens", "security.view_operatortoken", "security.change_operatortoken"),
]


@pytest.fixture
def rows(acme) -> dict[str, object]:
    """One live API key and one live operator token, by action."""
    owner = make_operator("token-owner", permissions=[])
    return {
        "revoke_keys": issue_api_key(acme, name="k").api_key,
        "revoke_tokens": issue_operator_token(owner, name="t").token,
    }


def _revoked(row) -> bool:
    model = ApiKey if isinstance(row, ApiKey) else OperatorToken
    return model.objects.get(pk=row.pk).revoked_at is not None


def _admin(*permissions: str) -> Client:
    client = Client()
    client.force_login(make_operator("operator", permissions=permissions))
    return client


@pytest.mark.parametrize(("changelist", "action", "view", "change"), CASES)
def test_a_viewer_is_neither_offered_the_action_nor_able_to_run_it(rows, changelist, action, view, change):
    admin = _admin(view)
    listing = admin.get(changelist)
    assert listing.status_code == 200
    assert action not in listing.content.decode()

    admin.post(changelist, {"action": action, "_selected_action": [str(rows[action].pk)]})

    assert not _revoked(rows[action])


@pytest.mark.parametrize(("changelist", "action", "view", "change"), CASES)
def test_the_change_permission_runs_the_action(rows, changelist, action, view, change):
    admin = _admin(view, change)

    response = admin.post(changelist, {"action": action, "_selected_action": [str(rows[action].pk)]})

    assert response.status_code == 302
    assert _revoked(rows[action])
