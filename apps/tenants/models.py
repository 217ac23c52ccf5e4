"""Tenants, their members and their API keys."""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from apps.core import priorities
from apps.security.crypto import TenantCipher, cipher_for_wrapped_key, new_wrapped_data_key


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    # A paused tenant's keys still authenticate but every call is refused (403).
    active = models.BooleanField(default=True)
    # The tenant's data key, wrapped by the master keys; never stored in the clear.
    wrapped_data_key = models.BinaryField(default=new_wrapped_data_key, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Set by services.create_tenant to the default plan; see Plan.
    plan = models.ForeignKey("Plan", on_delete=models.PROTECT, related_name="tenants")
    # How long finished tasks keep their input and output (purge_expired_outputs); None: forever.
    output_retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="days a finished task keeps its input and output; empty: forever"
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def cipher(self) -> TenantCipher:
        return cipher_for_wrapped_key(self.wrapped_data_key)


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


class Scope(models.TextChoices):
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    MODELS_READ = "models:read"


ALL_SCOPES = [scope.value for scope in Scope]


class ApiKey(models.Model):
    """A tenant's API key. The secret is shown once; only its hash is kept.

    The key reads ``lla_<prefix>_<secret>``: the prefix finds the row with an
    indexed lookup, the SHA-256 of the whole key is compared in constant time.
    A plain hash (no slow KDF) is right here because the secret is 256 random
    bits, not a password a person chose.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tenant.slug}:{self.prefix}"

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


# --- Plans, quotas and the usage ledger -------------------------------------------------


class PriorityClass(models.TextChoices):
    """The Contracts' priority classes, highest first, as Django choices (values
    from apps.core.priorities, their one definition); tasks and plans use these."""

    INTERACTIVE = priorities.INTERACTIVE
    NORMAL = priorities.NORMAL
    BATCH = priorities.BATCH


PRIORITY_CLASSES_HIGHEST_FIRST = priorities.CLASSES


class BudgetPeriod(models.TextChoices):
    MONTH = "month"  # calendar month, UTC
    DAY = "day"  # calendar day, UTC
    NONE = "none"  # one budget for the tenant's whole life


DEFAULT_PLAN_NAME = "default"


class Plan(models.Model):
    """Quotas a tenant works under. A limit of None means "no limit".

    Named plans ("default", "pro", ...) are shared by the tenants on them;
    ``set_plan`` gives a tenant a plan of its own (copied from its current
    one) before changing a limit, so editing one tenant never changes another.
    The field defaults are the default plan's values: the data migration and
    ``default_plan()`` create it from them.
    """

    name = models.CharField(max_length=100, unique=True)
    rpm = models.PositiveIntegerField(
        "requests per minute",
        null=True,
        blank=True,
        default=600,
        help_text="task submissions per minute; empty: no limit",
    )
    tpm = models.PositiveIntegerField(
        "tokens per minute",
        null=True,
        blank=True,
        default=1_000_000,
        help_text="worst-case tokens (prompt estimate + max_tokens) admitted per minute; empty: no limit",
    )
    budget_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, default=None, help_text="tokens per budget period; empty: no budget"
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    max_running = models.PositiveIntegerField(
        null=True, blank=True, default=64, help_text="tasks running at once; more wait their turn (never an error)"
    )
    max_queued = models.PositiveIntegerField(
        null=True, blank=True, default=1000, help_text="tasks queued or waiting at once; more are refused (429)"
    )
    weight = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.001)], help_text="fair-share weight: a larger share of busy models"
    )
    max_priority = models.CharField(
        max_length=16,
        choices=PriorityClass.choices,
        default=PriorityClass.INTERACTIVE,
        help_text="the highest priority class this tenant may submit",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # The range validators let NaN through (every comparison with it is false).
        if not math.isfinite(self.weight):
            raise ValidationError({"weight": "must be a finite number"})

    def limits(self) -> dict[str, int | float | str | None]:
        """The plan as operators read and write it (set_plan, /api/v1/ops/…/plan)."""
        return {field: getattr(self, field) for field in PLAN_LIMIT_FIELDS}


PLAN_LIMIT_FIELDS = (
    "rpm",
    "tpm",
    "budget_tokens",
    "budget_period",
    "max_running",
    "max_queued",
    "weight",
    "max_priority",
)


class QuotaState(models.Model):
    """One row per tenant: the lock that serializes the tenant's admissions, and
    the rate-limit state when no Redis is configured.

    The rate limits are token buckets kept as GCRA "theoretical arrival times"
    (epoch seconds): a bucket is full when its time is in the past.
    """

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="quota_state")
    requests_tat = models.FloatField(default=0.0)
    tokens_tat = models.FloatField(default=0.0)


class BudgetLedger(models.Model):
    """A tenant's token budget in one period: what was spent and what is reserved.

    Admission adds a task's worst-case cost to ``reserved_tokens`` with a
    conditional UPDATE (``spent + reserved + cost <= budget``); settlement moves
    it to ``spent_tokens`` at the actual cost. The check constraints make a
    bookkeeping error fail loudly rather than go negative.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="budget_ledgers")
    period = models.CharField(max_length=8, choices=BudgetPeriod.choices)
    period_start = models.DateTimeField()
    spent_tokens = models.PositiveBigIntegerField(default=0)
    reserved_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["tenant", "-period_start"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "period", "period_start"], name="unique_budget_period"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug} {self.period} from {self.period_start:%Y-%m-%d}"


class TaskCharge(models.Model):
    """One task's budget reservation, then its charge: written at admission,
    settled exactly once when the task ends (``settled_at`` is the guard).

    ``task_id`` is not a foreign key: tasks depend on tenants, not the reverse.
    """

    task_id = models.UUIDField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="task_charges")
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="task_charges")
    ledger = models.ForeignKey(BudgetLedger, on_delete=models.PROTECT, related_name="charges")
    reserved_tokens = models.PositiveIntegerField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["ledger", "api_key"], name="charge_ledger_key"),
            models.Index(fields=["settled_at", "created_at"], name="charge_unsettled"),
        ]

    def __str__(self) -> str:
        return f"task {self.task_id}: {self.reserved_tokens} reserved"
