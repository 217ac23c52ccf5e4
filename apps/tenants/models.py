"""Tenants, their members and their API keys."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core import priorities
from apps.security.crypto import TenantCipher, cipher_for_wrapped_key, new_wrapped_data_key
from apps.tenants import roles

# Defined with the role table; still importable from here (the redundant aliases re-export them).
from apps.tenants.roles import ALL_SCOPES as ALL_SCOPES
from apps.tenants.roles import Role
from apps.tenants.roles import Scope as Scope


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    # Paused (False): new submissions are refused (403 tenant_paused), queued tasks
    # wait, running ones finish; reads still answer (apps.tenants.services.pause_tenant).
    active = models.BooleanField(default=True)
    # The tenant's data key, wrapped by the master keys; never stored in the clear.
    wrapped_data_key = models.BinaryField(default=new_wrapped_data_key, editable=False)
    # While its data is re-encrypted under a new data key (apps.tenants.rekeying):
    # the retired data key(s), wrapped, which still decrypt; None otherwise.
    wrapped_retired_keys = models.BinaryField(null=True, editable=False)
    # The blind-index key, wrapped; None until the data key is first replaced
    # (until then it is derived from the data key: apps.security.crypto.rekeyed).
    wrapped_index_key = models.BinaryField(null=True, editable=False)
    # How far the re-encryption in progress got: {store name: last row walked, or true when done}.
    rekey_progress = models.JSONField(default=dict, editable=False)
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
        return cipher_for_wrapped_key(self.wrapped_data_key, self.wrapped_retired_keys, self.wrapped_index_key)


# An operator may be limited to some tenants: guardian object permissions on a
# Tenant (view_tenant, change_tenant) grant the operator API on that tenant's
# objects (apps.tenants.permissions.HasOperatorPermission). Direct foreign keys,
# not guardian's generic rows: a real FK is indexed, joins, and cascades when
# the tenant goes.
class TenantUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Tenant, on_delete=models.CASCADE)


class TenantGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Tenant, on_delete=models.CASCADE)


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


def _active_role(tenant: Any, user: Any) -> models.QuerySet:
    """The membership of ``user`` in ``tenant`` while the user is active (one, or none);
    each a value or an outer reference."""
    return Membership.objects.filter(tenant=tenant, user=user, user__is_active=True)


# The attribute ApiKeyQuerySet.with_creator_role() fills (the creator's role, read with the key).
CREATOR_ROLE = "creator_role_now"


class ApiKeyQuerySet(models.QuerySet):
    def with_creator_role(self) -> ApiKeyQuerySet:
        """Keys with their creator's current role read in the same query, so that
        ``has_scope`` needs none of its own. (apps.tenants.statements.api_key reads the
        same for each request, in SQL: tests/integration/test_api_key_statement.py.)"""
        role = _active_role(models.OuterRef("tenant"), models.OuterRef("created_by")).values("role")[:1]
        return self.annotate(**{CREATOR_ROLE: models.Subquery(role)})


class ApiKey(models.Model):
    """A tenant's API key. The secret is shown once; only its hash is kept.

    The key reads ``lla_<prefix>_<secret>``: the prefix finds the row with an
    indexed lookup, the SHA-256 of the whole key is compared in constant time.
    A plain hash (no slow KDF) is right here because the secret is 256 random
    bits, not a password a person chose.

    What a key may do is its ``scopes`` cut down, at each request, to what its
    creator's role allows now (apps.tenants.roles); ``created_by`` is empty for
    the keys operators issue, which speak for the tenant with an owner's rights.
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
    # Deleting the person deletes their keys: emptying the field instead would
    # turn their keys into operator keys, with an owner's rights.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        editable=False,
        related_name="api_keys_created",
        help_text="the member who made the key; empty: issued by an operator",
    )

    objects = ApiKeyQuerySet.as_manager()

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
        return scope in self.effective_scopes()

    def acting_role(self) -> str | None:
        """The role this key acts with now (apps.tenants.roles.authority)."""
        if self.created_by_id is None:
            return roles.authority(made_by_operator=True, creator_role=None)
        if CREATOR_ROLE in self.__dict__:
            role = self.__dict__[CREATOR_ROLE]
        else:
            role = _active_role(self.tenant_id, self.created_by_id).values_list("role", flat=True).first()
        return roles.authority(made_by_operator=False, creator_role=role)

    def effective_scopes(self) -> frozenset[str]:
        """What this key may do now: its scopes, as far as its creator's role allows."""
        return roles.effective_scopes(self.scopes, self.acting_role())


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


# --- The audit log ----------------------------------------------------------------------


class AuditAction(models.TextChoices):
    """What an audit event records: a closed list, so a filter can name every kind."""

    KEY_CREATED = "key_created", "API key created"
    KEY_CHANGED = "key_changed", "API key changed"
    KEY_REVOKED = "key_revoked", "API key revoked"
    MEMBER_ADDED = "member_added", "member added"
    MEMBER_REMOVED = "member_removed", "member removed"
    ROLE_CHANGED = "role_changed", "member's role changed"
    MODEL_GRANTED = "model_granted", "model granted"
    MODEL_REVOKED = "model_revoked", "model grant withdrawn"
    TENANT_CREATED = "tenant_created", "tenant created"
    TENANT_CHANGED = "tenant_changed", "tenant changed"
    TENANT_DELETED = "tenant_deleted", "tenant deleted"
    TENANT_PAUSED = "tenant_paused", "tenant paused"
    TENANT_RESUMED = "tenant_resumed", "tenant resumed"
    PLAN_CHANGED = "plan_changed", "plan changed"
    MASTER_KEY_ROTATED = "master_key_rotated", "master key rotated"
    DATA_KEY_REPLACED = "data_key_replaced", "tenant's data key replaced"
    OPERATOR_LOGIN = "operator_login", "operator signed in"
    OPERATOR_LOGIN_FAILED = "operator_login_failed", "operator sign-in failed"
    OPERATOR_LOGOUT = "operator_logout", "operator signed out"


class ActorKind(models.TextChoices):
    OPERATOR = "operator", "operator"  # a user: the admin, or the operator API (session or operator token)
    API_KEY = "api_key", "API key"  # a tenant's API key
    SYSTEM = "system", "system"  # no request: a management command, a periodic job
    ANONYMOUS = "anonymous", "anonymous"  # a request nobody is signed in to (a failed login)


class AuditLogIsAppendOnly(PermissionError):
    """Something tried to change or delete an audit event.

    Not a DomainError: no caller is refused here, a programming error is
    caught (and answers 500 if it ever reached the API)."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AuditLogIsAppendOnly("audit events are never changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("audit events are never deleted")


class AuditEvent(models.Model):
    """One thing an operator, a tenant's key or the platform did: append-only.

    Written by apps.tenants.audit.record() alone. Rows are inserted, never
    updated or deleted: the model, its queryset and the admin refuse, and on
    PostgreSQL a trigger refuses UPDATE and DELETE on the table (migration
    0006). Who and what are snapshots, not foreign keys: the tenant's id and
    slug, the user's id and name stay as they were when a tenant or user is
    deleted, and a deletion never has to rewrite the log (a SET_NULL foreign
    key would be an UPDATE, which the trigger refuses).

    ``changes`` is ``{field: [old, new]}``; never a secret (record() refuses
    the names of secret fields).
    """

    id = models.BigAutoField(primary_key=True)  # the order of insertion
    time = models.DateTimeField(default=timezone.now, editable=False)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    # The username then, or the API key's prefix (a key's public id, never its secret).
    actor_name = models.CharField(max_length=150, blank=True)
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    tenant_id = models.UUIDField(null=True, blank=True)
    tenant_slug = models.CharField("tenant", max_length=64, blank=True)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    target = models.CharField(max_length=200, blank=True, help_text="what was acted on")
    changes = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-time", "-id"]
        # Nobody can be given the right to add, change or delete events: there is none.
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["-time"], name="audit_time"),
            models.Index(fields=["tenant_id", "-time"], name="audit_tenant_time"),
            models.Index(fields=["action", "-time"], name="audit_action_time"),
        ]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.action} {self.target}"

    @property
    def actor(self) -> str:
        if self.actor_kind == ActorKind.API_KEY:
            return f"key {self.actor_name}"
        return self.actor_name or self.actor_kind

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditLogIsAppendOnly("audit events are never changed")
        kwargs["force_insert"] = True  # an INSERT, whatever the caller asked for
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("audit events are never deleted")
