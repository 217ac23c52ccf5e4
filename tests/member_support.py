"""Members of the fixed tenants, and keys made for them (their role bounds the key)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model

from apps.tenants.models import ApiKey, Membership, Tenant
from apps.tenants.services import issue_api_key
from tests.conftest import ApiClient

KEYS = "/api/v1/keys"
MEMBERS = "/api/v1/members"


@dataclass
class Member:
    user: object
    membership: Membership
    api_key: ApiKey
    secret: str

    @property
    def api(self) -> ApiClient:
        return ApiClient(self.secret)

    def set_role(self, role: str) -> None:
        Membership.objects.filter(pk=self.membership.pk).update(role=role)


def member(tenant: Tenant, username: str, role: str, scopes: list[str] | None = None) -> Member:
    """``username`` (made if new) with ``role`` in ``tenant``, and a key made for them
    (by default with every scope the role allows)."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    membership, _ = Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
    issued = issue_api_key(tenant, name=f"{username}'s key", scopes=scopes, created_by=user)
    return Member(user, membership, issued.api_key, issued.secret)


def assert_error(response, status: int, code: str | None = None, param: str | None = None) -> dict:
    """A refusal in the Contracts' shape, with this status (and code and param, when given)."""
    assert response.status == status, response.body
    error = response.body["error"]
    assert set(error) == {"type", "code", "message", "param"}, error
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error
