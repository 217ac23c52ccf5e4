"""manage.py create_api_key SLUG → prints the key once; it has every scope.

With ``--for-user USERNAME``: the key is a member's, with every scope their role
allows, and it follows their role from then on (docs/api.md, "Roles and scopes").
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.core.errors import DomainError
from apps.tenants.models import Tenant
from apps.tenants.services import issue_api_key


class Command(BaseCommand):
    help = "Issue an API key with every scope for a tenant; prints the key (shown only this once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="", help="a label for operators")
        parser.add_argument("--expires-in-days", type=int, help="the key stops working after this many days")
        parser.add_argument(
            "--for-user", metavar="USERNAME", help="a member's key: the scopes of their role, following it"
        )

    def handle(
        self, *args, slug: str, name: str, expires_in_days: int | None, for_user: str | None, **options
    ) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant with slug {slug!r}")
        if expires_in_days is not None and expires_in_days <= 0:
            raise CommandError("--expires-in-days must be positive")
        user = None
        if for_user is not None:
            user = get_user_model().objects.filter(username=for_user).first()
            if user is None:
                raise CommandError(f"no user named {for_user!r}")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        try:
            issued = issue_api_key(tenant, name=name, expires_at=expires_at, created_by=user)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(issued.secret)
