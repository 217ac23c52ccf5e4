"""manage.py create_tenant NAME → prints the new tenant's slug (and nothing else)."""

from django.core.management.base import BaseCommand, CommandError

from apps.tenants.services import TenantError, create_tenant


class Command(BaseCommand):
    help = "Create a tenant; prints its slug."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug", help="defaults to the slugified name")

    def handle(self, *args, name: str, slug: str | None, **options) -> None:
        try:
            tenant = create_tenant(name, slug)
        except TenantError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(tenant.slug)
