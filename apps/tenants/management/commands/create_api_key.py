"""manage.py create_api_key SLUG → prints the key once; it has every scope."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.tenants.models import Tenant
from apps.tenants.services import issue_api_key


class Command(BaseCommand):
    help = "Issue an API key with every scope for a tenant; prints the key (shown only this once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="", help="a label for operators")
        parser.add_argument("--expires-in-days", type=int, help="the key stops working after this many days")

    def handle(self, *args, slug: str, name: str, expires_in_days: int | None, **options) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant with slug {slug!r}")
        if expires_in_days is not None and expires_in_days <= 0:
            raise CommandError("--expires-in-days must be positive")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        issued = issue_api_key(tenant, name=name, expires_at=expires_at)
        self.stdout.write(issued.secret)
