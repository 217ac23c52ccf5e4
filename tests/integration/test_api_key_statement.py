"""The request's key read (apps.tenants.statements.api_key, a cursor statement)
answers exactly what the ORM's ``ApiKey.objects.with_creator_role()`` query did:
the key, its tenant and its creator's current role, for operators' keys and
members' keys (active, deactivated, removed, demoted), revoked and expired
keys, in two tenants, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.tenants import statements
from apps.tenants.models import CREATOR_ROLE, ApiKey, Membership, Role
from apps.tenants.services import find_api_key, issue_api_key, revoke_api_key
from tests.member_support import member

pytestmark = pytest.mark.django_db


def _values(row) -> list | None:
    return None if row is None else [getattr(row, field.attname) for field in type(row)._meta.concrete_fields]


@pytest.fixture
def keys(acme, globex) -> list[str]:
    """Keys of every kind in both tenants; their secrets."""
    secrets = [issue_api_key(acme, name="operator's").secret, issue_api_key(globex, name="operator's").secret]
    secrets.append(member(acme, "alice", Role.OWNER).secret)
    secrets.append(member(globex, "alice", Role.MEMBER).secret)  # alice in both, different roles
    demoted = member(acme, "bob", Role.ADMIN)
    demoted.set_role(Role.VIEWER)
    secrets.append(demoted.secret)
    gone = member(globex, "carol", Role.ADMIN)
    Membership.objects.filter(pk=gone.membership.pk).delete()
    secrets.append(gone.secret)
    inactive = member(acme, "dave", Role.ADMIN)
    get_user_model().objects.filter(pk=inactive.user.pk).update(is_active=False)
    secrets.append(inactive.secret)
    revoked = issue_api_key(acme, name="revoked")
    revoke_api_key(revoked.api_key)
    secrets.append(revoked.secret)
    expired = issue_api_key(globex, name="expired", expires_at=timezone.now() + timedelta(seconds=1))
    ApiKey.objects.filter(pk=expired.api_key.pk).update(expires_at=timezone.now() - timedelta(days=1))
    secrets.append(expired.secret)
    return secrets


def test_the_statement_reads_what_the_orm_reads(keys):
    for secret in keys:
        prefix = secret.split("_")[1]
        expected = ApiKey.objects.with_creator_role().select_related("tenant").filter(prefix=prefix).first()
        found = statements.api_key(prefix)

        assert _values(found) == _values(expected), secret
        assert _values(found.tenant) == _values(expected.tenant)
        assert getattr(found, CREATOR_ROLE) == getattr(expected, CREATOR_ROLE)
        assert found.effective_scopes() == expected.effective_scopes()
    assert statements.api_key("nosuchprefix") is None


def test_a_request_reads_its_key_tenant_and_role_in_one_statement(keys, django_assert_num_queries):
    for secret in keys:
        find_api_key(secret)  # the first use writes last_used_at
    with django_assert_num_queries(1):
        found = [find_api_key(secret) for secret in keys[:1]]
        assert found[0].tenant.slug == "acme" and found[0].effective_scopes()
    usable = [secret for secret in keys if find_api_key(secret) is not None]
    assert len(usable) == len(keys) - 2  # the revoked and the expired key
