"""First-run seed (``make run``): a demo tenant, its API key and an admin login, once."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.test import Client, RequestFactory

from apps.catalog.models import LLMModel
from apps.tenants.models import ALL_SCOPES, ApiKey, Membership, Role, Tenant
from apps.tenants.seeding import seed_first_run
from apps.tenants.services import find_api_key

pytestmark = pytest.mark.django_db


def _check_password(password: str):
    """The user this admin password signs in, or None. A login has a request: the
    login throttle (django-axes) counts failures by address and refuses none without one."""
    return authenticate(RequestFactory().post("/admin/login/"), username="admin", password=password)


def _counts() -> tuple[int, int, int, int]:
    return (
        Tenant.objects.count(),
        get_user_model().objects.count(),
        ApiKey.objects.count(),
        Membership.objects.count(),
    )


def test_first_run_creates_demo_tenant_admin_and_a_working_key():
    result = seed_first_run()

    assert result is not None
    tenant = Tenant.objects.get(slug="demo")
    assert tenant.active

    # The admin login works, and opens the admin.
    assert result.admin_username == "admin"
    assert len(result.admin_password) >= 12
    admin = _check_password(result.admin_password)
    assert admin is not None and admin.is_superuser and admin.is_staff
    assert _check_password(result.admin_password + "x") is None
    client = Client()
    signed_in = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": result.admin_password})
    assert (signed_in.status_code, signed_in["Location"]) == (302, "/admin/")
    assert client.get("/admin/").status_code == 200
    assert Membership.objects.get(user=admin, tenant=tenant).role == Role.OWNER

    # The key authenticates, for the demo tenant, with every scope...
    api_key = find_api_key(result.api_key)
    assert api_key is not None
    assert api_key.tenant == tenant
    assert sorted(api_key.scopes) == sorted(ALL_SCOPES)
    # ...and the demo tenant sees the seeded echo model through the API.
    listed = Client(HTTP_AUTHORIZATION=f"Bearer {result.api_key}").get("/api/v1/models")
    assert listed.status_code == 200, listed.content
    assert b'"echo"' in listed.content
    assert LLMModel.objects.visible_to(tenant).filter(name="echo").exists()


def test_a_second_run_returns_none_and_creates_nothing():
    first = seed_first_run()
    assert first is not None
    before = _counts()

    assert seed_first_run() is None

    assert _counts() == before
    # The first run's credentials still work.
    assert find_api_key(first.api_key) is not None
    assert _check_password(first.admin_password) is not None


def test_no_seed_when_an_operator_set_up_a_superuser_by_hand(django_user_model):
    django_user_model.objects.create_superuser("root", email="", password=None)
    before = _counts()

    assert seed_first_run() is None

    assert _counts() == before
    assert not Tenant.objects.filter(slug="demo").exists()


def test_no_seed_when_a_demo_tenant_exists():
    from apps.tenants.services import create_tenant

    create_tenant("Demo", "demo")
    before = _counts()

    assert seed_first_run() is None

    assert _counts() == before
    assert not get_user_model().objects.filter(is_superuser=True).exists()


def test_seeding_coexists_with_other_tenants(acme, globex):
    result = seed_first_run()

    assert result is not None
    assert find_api_key(result.api_key).tenant.slug == "demo"
    assert set(Tenant.objects.values_list("slug", flat=True)) == {"acme", "globex", "demo"}
