"""First-run seed for `make run`: a demo tenant, its API key and an admin login."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from apps.tenants.models import Membership, Role, Tenant
from apps.tenants.services import create_tenant, issue_api_key

DEMO_TENANT_SLUG = "demo"
ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class SeedResult:
    api_key: str
    admin_username: str
    admin_password: str


def seed_first_run() -> SeedResult | None:
    """Seed once; None when this database was seeded (or set up by hand) before."""
    User = get_user_model()
    with transaction.atomic():
        if Tenant.objects.filter(slug=DEMO_TENANT_SLUG).exists() or User.objects.filter(is_superuser=True).exists():
            return None
        tenant = create_tenant("Demo", DEMO_TENANT_SLUG)
        password = secrets.token_urlsafe(12)
        admin = User.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
        Membership.objects.create(user=admin, tenant=tenant, role=Role.OWNER)
        issued = issue_api_key(tenant, name="demo key (first run)")
    return SeedResult(api_key=issued.secret, admin_username=ADMIN_USERNAME, admin_password=password)
