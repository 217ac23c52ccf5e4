"""manage.py set_plan SLUG [--rpm N] [--tpm N] [--budget-tokens N] [--max-running N]
[--max-queued N] [--weight W] [--max-priority CLASS] → prints the tenant's plan
as one JSON line.

Limits change on the tenant's own plan: a plan shared with other tenants (the
default plan among them) is first copied for this tenant. A limit given as
"unlimited" is lifted. With no option, prints the plan unchanged.
"""

from __future__ import annotations

import argparse
import json

from django.core.management.base import BaseCommand, CommandError

from apps.tenants.api.serializers import plan_representation
from apps.tenants.models import BudgetPeriod, PriorityClass, Tenant
from apps.tenants.services import PlanError, change_tenant_plan

UNLIMITED = ("unlimited", "none")


def limit(value: str) -> int | None:
    """argparse type: a non-negative integer, or "unlimited" (None)."""
    if value.lower() in UNLIMITED:
        return None
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number or 'unlimited'") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return number


# The default of every plan option: "not given, leave as it is" ("unlimited" is None).
KEEP = object()
PLAN_OPTIONS = ("rpm", "tpm", "budget_tokens", "budget_period", "max_running", "max_queued", "weight", "max_priority")


class Command(BaseCommand):
    help = "Change a tenant's plan limits; prints the resulting plan as one JSON line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--plan", help="first move the tenant to this named plan")
        parser.add_argument("--rpm", type=limit, default=KEEP, help="task submissions per minute")
        parser.add_argument(
            "--tpm", type=limit, default=KEEP, help="worst-case tokens (prompt estimate + max_tokens) per minute"
        )
        parser.add_argument("--budget-tokens", type=limit, default=KEEP, help="tokens per budget period")
        parser.add_argument("--budget-period", choices=BudgetPeriod.values, default=KEEP, help="month, day or none")
        parser.add_argument("--max-running", type=limit, default=KEEP, help="tasks running at once (more wait)")
        parser.add_argument("--max-queued", type=limit, default=KEEP, help="tasks queued or waiting (more get 429)")
        parser.add_argument("--weight", type=float, default=KEEP, help="fair-share weight (> 0)")
        parser.add_argument("--max-priority", choices=PriorityClass.values, default=KEEP, help="highest class allowed")

    def handle(self, *args, slug: str, plan: str | None, **options) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant with slug {slug!r}")
        changes = {field: options[field] for field in PLAN_OPTIONS if options[field] is not KEEP}
        try:
            result = change_tenant_plan(tenant, changes, plan_name=plan)
        except PlanError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(plan_representation(tenant, result)))
