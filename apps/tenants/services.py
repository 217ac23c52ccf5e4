"""The only writers of tenant, membership, API key, plan and budget-ledger rows."""

from __future__ import annotations

import copy
import functools
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone
from django.utils.text import slugify

from apps.core import logs, metrics, notify, rows
from apps.core.errors import InvalidInput, PermissionRefused
from apps.core.secrets import SecretKind
from apps.security.crypto import DecryptionError, destroyed_key, rewrap_data_key
from apps.tenants import audit, hooks, roles, statements
from apps.tenants.models import (
    ALL_SCOPES,
    DEFAULT_PLAN_NAME,
    PLAN_LIMIT_FIELDS,
    ApiKey,
    AuditAction,
    BudgetLedger,
    BudgetPeriod,
    Membership,
    Plan,
    QuotaState,
    TaskCharge,
    Tenant,
)

if TYPE_CHECKING:
    # settings.AUTH_USER_MODEL, which ApiKey.created_by points to, is the stock User.
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

API_KEYS = SecretKind("lla")
# last_used_at is a hint for operators, not an audit trail: writing it on every
# request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TenantError(InvalidInput):
    """An operator asked for something impossible (duplicate slug, bad name)."""


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the full key, to show once


def create_tenant(name: str, slug: str | None = None) -> Tenant:
    name = name.strip()
    if not name:
        raise TenantError("tenant name must not be empty")
    slug = slugify(slug or name)[:64]
    if not slug:
        raise TenantError(f"cannot derive a slug from {name!r}; give one")
    with transaction.atomic():
        if Tenant.objects.filter(slug=slug).exists():
            raise TenantError(f"a tenant with slug {slug!r} exists")
        tenant = Tenant.objects.create(name=name, slug=slug, plan=default_plan())
        audit.record(AuditAction.TENANT_CREATED, tenant=tenant, target=f"tenant {slug}", changes={"name": [None, name]})
        return tenant


class ScopeNotAllowed(PermissionRefused):
    """A key was asked for scopes beyond what its maker holds (403, param ``scopes``)."""

    default_code = "scope_not_allowed"

    def __init__(self, holder: str, beyond: list[str]) -> None:
        super().__init__(f"{holder} cannot grant the scopes {', '.join(beyond)}", param="scopes")
        self.scopes = beyond


def issue_api_key(
    tenant: Tenant,
    *,
    name: str = "",
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    created_by: User | None = None,
) -> IssuedKey:
    """A new key. ``created_by``: the member it is made for (None: an operator's
    key, every scope by default); never more scopes than that member's role allows,
    and by default all of those."""
    allowed = ALL_SCOPES if created_by is None else _role_scopes_of(tenant, created_by)
    scopes = [scope for scope in ALL_SCOPES if scope in allowed] if scopes is None else checked_scopes(scopes)
    beyond = [scope for scope in scopes if scope not in allowed]
    if beyond:
        raise ScopeNotAllowed(f"the role of {created_by} in {tenant.slug}", beyond)
    new = API_KEYS.issue()
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            tenant=tenant,
            name=name,
            prefix=new.public_id,
            key_hash=new.digest,
            scopes=scopes,
            expires_at=expires_at,
            created_by=created_by,
        )
        audit.record(
            AuditAction.KEY_CREATED,
            tenant=tenant,
            target=key_target(api_key),
            changes=audit.diff(None, api_key, KEY_AUDIT_FIELDS),
        )
    return IssuedKey(api_key=api_key, secret=new.value)


def _role_scopes_of(tenant: Tenant, user: User) -> frozenset[str]:
    membership = Membership.objects.filter(tenant=tenant, user=user, user__is_active=True).first()
    if membership is None:
        raise PermissionRefused(f"{user} is not an active member of {tenant.slug}", code="not_a_member")
    return roles.role_scopes(membership.role)


def checked_scopes(scopes: object) -> list[str]:
    """``scopes`` when it is a list of known scope names; else TenantError naming the known ones."""
    known = ", ".join(ALL_SCOPES)
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        raise TenantError(f"scopes must be a list of scope names ({known})", param="scopes")
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise TenantError(f"unknown scopes: {', '.join(unknown)} (the scopes are {known})", param="scopes")
    return scopes


# Woken with a revoked key's id once the revocation commits: the servers end the
# streams it opened (apps.streaming.revocations).
KEY_REVOKED_CHANNEL = "key-revoked"


def revoke_api_key(api_key: ApiKey) -> None:
    with transaction.atomic():
        if ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            audit.record(AuditAction.KEY_REVOKED, tenant=api_key.tenant, target=key_target(api_key))
            key_id = str(api_key.pk)
            transaction.on_commit(lambda: notify.wake(KEY_REVOKED_CHANNEL, key_id))


def unusable_keys(key_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``key_ids`` that no longer authenticate (revoked, expired or gone)."""
    now = timezone.now()
    usable = ApiKey.objects.filter(pk__in=key_ids, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    return key_ids - set(usable.values_list("pk", flat=True))


class TenantPaused(PermissionRefused):
    """A paused tenant submits new work (403 tenant_paused); its reads still answer."""

    default_code = "tenant_paused"


def refuse_if_paused(tenant: Tenant) -> None:
    """Called by every way new work comes in (tasks, workflows, the /v1 gateway:
    apps.tasks.services.submit_task and .workflows.submit_workflow)."""
    if not tenant.active:
        metrics.admission_rejections.labels(reason=TenantPaused.default_code).inc()  # as admission's refusals
        raise TenantPaused("this tenant is paused: it cannot submit new tasks until an operator resumes it")


def pause_tenant(tenant: Tenant) -> bool:
    """Pause ``tenant``: its new submissions are refused (TenantPaused), its queued
    tasks wait (the dispatcher passes over them), its running tasks finish; reads,
    cancels and erasures still work. False when it was paused already."""
    return _set_active(tenant, False)


def resume_tenant(tenant: Tenant) -> bool:
    """Undo ``pause_tenant`` and wake the dispatcher for the tasks that waited.
    False when it was not paused."""
    return _set_active(tenant, True)


def _set_active(tenant: Tenant, active: bool) -> bool:
    with transaction.atomic():
        # Conditional: two operators pausing at once leave one event, not two.
        changed = bool(Tenant.objects.filter(pk=tenant.pk, active=not active).update(active=active))
        tenant.active = active
        if changed:
            audit.record(
                AuditAction.TENANT_RESUMED if active else AuditAction.TENANT_PAUSED,
                tenant=tenant,
                target=f"tenant {tenant.slug}",
                changes={"active": [not active, active]},
            )
            if active:
                hooks.fire_resumed_after_commit()
    return changed


# What the audit log says of a key: never its secret or hash (apps.tenants.audit).
KEY_AUDIT_FIELDS = ("name", "scopes", "expires_at")


def key_target(api_key: ApiKey) -> str:
    return f"key {api_key.prefix} ({api_key.name})" if api_key.name else f"key {api_key.prefix}"


def find_api_key(raw_key: str) -> ApiKey | None:
    """The usable key matching ``raw_key``, or None (unknown, wrong, revoked, expired)."""
    public_id = API_KEYS.public_id(raw_key)
    if public_id is None:
        return None
    # With its tenant and its creator's role (one statement through a cursor: it runs on every
    # request, apps.tenants.statements): has_scope needs the role on every request.
    api_key = statements.api_key(public_id)
    if not API_KEYS.matches(api_key.key_hash if api_key else None, raw_key) or api_key is None:
        return None
    now = timezone.now()
    if not api_key.is_usable(now):
        return None
    logs.note_tenant(api_key.tenant.slug)  # the access log names who called
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


def rewrap_all_data_keys() -> int:
    """Re-wrap every tenant's data key with the primary master key; returns the count."""
    count = 0
    with transaction.atomic():  # all or nothing: one unreadable key re-wraps none
        wrapped_fields = ("wrapped_data_key", "wrapped_retired_keys", "wrapped_index_key")
        for tenant in Tenant.objects.select_for_update().only("id", "slug", *wrapped_fields):
            if bytes(tenant.wrapped_data_key) == destroyed_key:
                continue  # crypto-shredded (apps.tenants.data_keys.delete_tenant): nothing to re-wrap
            try:
                # Every wrapped part: the retired keys of a re-encryption in progress and
                # the blind-index key must outlive the old master key as well.
                rewrapped = {
                    name: rewrap_data_key(getattr(tenant, name))
                    for name in wrapped_fields
                    if getattr(tenant, name) is not None
                }
            except DecryptionError as exc:
                raise DecryptionError(f"tenant {tenant.slug!r}: {exc}") from exc
            Tenant.objects.filter(pk=tenant.pk).update(**rewrapped)
            count += 1
        audit.record(AuditAction.MASTER_KEY_ROTATED, target=f"{count} tenant data keys re-wrapped")
    return count


# --- Plans -----------------------------------------------------------------------------


class PlanError(TenantError):
    """A plan change an operator asked for is invalid; ``field`` names the culprit."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message, param=field)
        self.field = field
        self.reason = message


def default_plan() -> Plan:
    """The plan new tenants get. The data migration creates it; should it be gone
    (a test database flushed), it comes back with the model's default values."""
    plan, _ = Plan.objects.get_or_create(name=DEFAULT_PLAN_NAME)
    return plan


def change_tenant_plan(tenant: Tenant, changes: Mapping[str, Any], *, plan_name: str | None = None) -> Plan:
    """Put ``tenant`` on the plan named ``plan_name`` (if given), then apply ``changes``
    (limit field → value; None lifts a limit). Returns the tenant's plan.

    A plan other tenants share, or the default plan, is never edited from here:
    the tenant first gets a copy of its own, so ``set_plan acme --rpm 10``
    changes acme alone. Shared plans are edited in the admin.
    """
    unknown = sorted(set(changes) - set(PLAN_LIMIT_FIELDS))
    if unknown:
        raise PlanError(unknown[0], "not a plan limit")
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().select_related("plan").get(pk=tenant.pk)
        plan = tenant.plan
        before = copy.copy(plan)  # as it was: the changes below may edit this very row
        if plan_name is not None:
            named = Plan.objects.filter(name=plan_name).first()
            if named is None:
                raise PlanError("plan", f"no plan named {plan_name!r}")
            plan = named
        if changes and _is_shared(plan, tenant):
            plan = _copy_for(plan, tenant)
        for field, value in changes.items():
            setattr(plan, field, value)
        try:
            plan.full_clean()
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise PlanError(None if field == "__all__" else field, " ".join(messages)) from None
        plan.save()
        if tenant.plan_id != plan.pk:
            Tenant.objects.filter(pk=tenant.pk).update(plan=plan)
        record_plan_change(tenant, before, plan)
    return plan


def record_plan_change(tenant: Tenant | None, before: Plan, after: Plan) -> None:
    """The audit event of a plan change (``before``: the plan as it was), when anything
    changed: ``plan`` names a move to another plan, the limits say what each became.
    ``tenant`` None: a shared plan edited, for every tenant on it."""
    changes = audit.diff(before, after, ("name", *PLAN_LIMIT_FIELDS))
    if "name" in changes:
        changes["plan"] = changes.pop("name")
    if changes:
        audit.record(AuditAction.PLAN_CHANGED, tenant=tenant, target=f"plan {after.name}", changes=changes)


def _is_shared(plan: Plan, tenant: Tenant) -> bool:
    return plan.name == DEFAULT_PLAN_NAME or plan.tenants.exclude(pk=tenant.pk).exists()


def _copy_for(plan: Plan, tenant: Tenant) -> Plan:
    """An unsaved copy of ``plan`` named after ``tenant`` (a free name)."""
    base = f"tenant:{tenant.slug}"
    name, suffix = base, 1
    while Plan.objects.filter(name=name).exists():
        suffix += 1
        name = f"{base}-{suffix}"
    return Plan(name=name, **plan.limits())


# --- Budget ledger ----------------------------------------------------------------------
#
# Admission runs in one transaction with the task's insert: lock_admissions()
# first (a row lock per tenant), then reserve_budget() — a conditional UPDATE
# whose row count is checked, so concurrent API processes can never reserve
# past the budget. settle_charge() moves a reservation to "spent" exactly once.

NO_PERIOD_START = datetime(1970, 1, 1, tzinfo=UTC)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime | None]:
    """[start, end) of the budget period containing ``now`` (UTC); end None for "none"."""
    now = now.astimezone(UTC)
    if period == BudgetPeriod.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if period == BudgetPeriod.MONTH:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    return NO_PERIOD_START, None


@dataclass  # not frozen: raising sets attributes (__traceback__) on an exception
class BudgetExceeded(Exception):
    """The task's worst-case cost does not fit in what is left of the budget."""

    budget_tokens: int
    spent_tokens: int
    reserved_tokens: int
    cost_tokens: int
    period: str
    period_end: datetime | None

    @property
    def remaining_tokens(self) -> int:
        return max(self.budget_tokens - self.spent_tokens - self.reserved_tokens, 0)


def lock_admissions(tenant: Tenant) -> QuotaState:
    """Serialize this tenant's admissions until the end of the current transaction.

    PostgreSQL: a row lock on the tenant's QuotaState row. SQLite: writers are
    serialized already (IMMEDIATE transactions); the lock is a no-op there.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_admissions() holds a lock until commit: call it inside transaction.atomic()")
    state = statements.lock_quota_state(tenant.pk)  # select_for_update(), through a cursor (every admission)
    if state is None:
        # First admission ever: create the row; a concurrent creator wins harmlessly.
        QuotaState.objects.bulk_create([QuotaState(tenant=tenant)], ignore_conflicts=True)
        state = QuotaState.objects.select_for_update().get(tenant=tenant)
    return state


def _current_ledger_id(tenant: Tenant, period: str, now: datetime) -> int:
    start, _ = period_bounds(period, now)
    ledger = BudgetLedger.objects.filter(tenant=tenant, period=period, period_start=start).values_list("pk", flat=True)
    ledger_id = ledger.first()
    if ledger_id is None:
        BudgetLedger.objects.bulk_create(
            [BudgetLedger(tenant=tenant, period=period, period_start=start)], ignore_conflicts=True
        )
        ledger_id = ledger.get()
    return ledger_id


def reserve_budget(
    tenant: Tenant, plan: Plan, api_key: ApiKey | None, task_id: uuid.UUID, cost_tokens: int
) -> TaskCharge:
    """Reserve ``cost_tokens`` of the current period's budget for one task, or raise
    BudgetExceeded and change nothing. Unlimited plans reserve too: the ledger
    then still shows what is in flight."""
    now = timezone.now()
    period_start, _ = period_bounds(plan.budget_period, now)
    # Usually one statement (apps.tenants.statements): the conditional UPDATE of
    # the period's ledger row, found by its key, returns its id.
    reserve = functools.partial(
        statements.reserve, tenant.pk, plan.budget_period, period_start, cost_tokens, plan.budget_tokens
    )
    ledger_id = reserve()
    if ledger_id is None:
        # The period's first reservation (no row yet), or the cost does not fit.
        existing = _current_ledger_id(tenant, plan.budget_period, now)  # makes the row if missing
        ledger_id = reserve()
        if ledger_id is None:
            current = BudgetLedger.objects.get(pk=existing)
            # The row exists now: only a limited plan's condition can refuse.
            assert plan.budget_tokens is not None
            raise BudgetExceeded(
                budget_tokens=plan.budget_tokens,
                spent_tokens=current.spent_tokens,
                reserved_tokens=current.reserved_tokens,
                cost_tokens=cost_tokens,
                period=plan.budget_period,
                period_end=period_bounds(plan.budget_period, now)[1],
            )
    charge = TaskCharge(
        task_id=task_id, tenant=tenant, api_key=api_key, ledger_id=ledger_id, reserved_tokens=cost_tokens
    )
    rows.insert(charge, transaction.get_connection())  # create(), without compiling the INSERT each time
    return charge


def reprice_reservation(plan: Plan, task_id: uuid.UUID, cost_tokens: int) -> None:
    """Make an unsettled task's reservation ``cost_tokens`` (its input changed since
    admission: a workflow node's references were replaced by its parents' outputs),
    or raise BudgetExceeded and change nothing.

    On the ledger row the task reserved on, so the budget it counts against
    stays the one it was admitted under. A reservation that grows must fit,
    as at admission (one conditional UPDATE); one that shrinks always does.
    Call it inside the transaction that changes the task, after
    ``lock_admissions``. No open reservation (settled already, or admitted
    before budgets existed): nothing to change.
    """
    charges = TaskCharge.objects.filter(task_id=task_id, settled_at__isnull=True)
    charge = charges.values_list("ledger_id", "reserved_tokens").first()
    if charge is None:
        return
    ledger_id, reserved_tokens = charge
    more = cost_tokens - reserved_tokens
    if more == 0:
        return
    ledger = BudgetLedger.objects.filter(pk=ledger_id)
    if more > 0 and plan.budget_tokens is not None:
        # The check and the increment are one statement, as in statements.reserve.
        ledger = ledger.filter(LessThanOrEqual(F("spent_tokens") + F("reserved_tokens"), plan.budget_tokens - more))
    if not ledger.update(reserved_tokens=F("reserved_tokens") + more):
        current = BudgetLedger.objects.get(pk=ledger_id)
        assert plan.budget_tokens is not None  # only a limited plan's condition can refuse
        raise BudgetExceeded(
            budget_tokens=plan.budget_tokens,
            spent_tokens=current.spent_tokens,
            reserved_tokens=current.reserved_tokens - reserved_tokens,  # by the others: this one is being replaced
            cost_tokens=cost_tokens,
            period=current.period,
            period_end=period_bounds(current.period, current.period_start)[1],
        )
    charges.update(reserved_tokens=cost_tokens)


def settle_charge(task_id: uuid.UUID, prompt_tokens: int, completion_tokens: int) -> bool:
    """Replace the task's reservation with its actual cost; False when there is
    nothing to settle (settled before, or admitted before budgets existed).

    The charge is the actual usage, in full, even above the reservation: the
    worker stops at max_tokens, so only the prompt can be larger than reserved
    (an estimate where the model's adapter cannot count it), and the tenant
    used those tokens. ``spent`` may then pass the budget by that difference;
    admission refuses what no longer fits. (apps.scheduler.budget states the
    same rule in pure Python.)
    """
    # No savepoint: inside a caller's transaction (a task's end) a failure here
    # must roll the whole of it back anyway, and the savepoint costs two round trips.
    with transaction.atomic(savepoint=False):
        # One statement on PostgreSQL, two on SQLite (apps.tenants.statements); its
        # conditional UPDATE of the charge is the exactly-once guard.
        reserved_tokens = statements.settle(task_id, timezone.now(), prompt_tokens, completion_tokens)
    if reserved_tokens is None:
        return False
    actual = prompt_tokens + completion_tokens
    if actual > reserved_tokens:
        logger.info(
            "task %s used %d tokens, %d more than reserved for it (a low prompt estimate); charged in full",
            task_id, actual, actual - reserved_tokens,
        )
    return True


def unsettled_charges(created_before: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Task ids of reservations still open, oldest first (for the settlement sweep)."""
    return list(
        TaskCharge.objects.filter(settled_at__isnull=True, created_at__lt=created_before)
        .order_by("created_at")
        .values_list("task_id", flat=True)[:limit]
    )


@dataclass(frozen=True)
class KeyUsage:
    key_prefix: str | None  # None: tasks whose key was deleted since
    key_name: str
    prompt_tokens: int
    completion_tokens: int
    reserved_tokens: int
    tasks: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class BudgetUsage:
    period: str
    period_start: datetime
    period_end: datetime | None
    budget_tokens: int | None
    spent_tokens: int
    reserved_tokens: int
    by_key: list[KeyUsage]

    @property
    def remaining_tokens(self) -> int | None:
        if self.budget_tokens is None:
            return None
        return max(self.budget_tokens - self.spent_tokens - self.reserved_tokens, 0)


def budget_usage(tenant: Tenant, plan: Plan) -> BudgetUsage:
    """The tenant's current budget period: totals, and per key (every usable key,
    plus any other key that has tasks in the period)."""
    now = timezone.now()
    start, end = period_bounds(plan.budget_period, now)
    ledger = BudgetLedger.objects.filter(tenant=tenant, period=plan.budget_period, period_start=start).first()
    # Each key's aggregate row: api_key, then sums and counts (a sum over no tokens is None).
    per_key: dict[uuid.UUID | None, Mapping[str, Any]] = {}
    if ledger is not None:
        rows = (
            TaskCharge.objects.filter(ledger=ledger)
            .values("api_key")
            .annotate(
                prompt=Sum("prompt_tokens"),
                completion=Sum("completion_tokens"),
                reserved=Sum("reserved_tokens", filter=Q(settled_at__isnull=True), default=0),
                tasks=Count("task_id"),
            )
        )
        per_key = {row["api_key"]: row for row in rows}
    keys = ApiKey.objects.filter(tenant=tenant).filter(Q(revoked_at__isnull=True) | Q(pk__in=[k for k in per_key if k]))
    by_key = [_key_usage(key.prefix, key.name, per_key.get(key.pk)) for key in keys.order_by("created_at")]
    if None in per_key:
        by_key.append(_key_usage(None, "", per_key[None]))
    return BudgetUsage(
        period=plan.budget_period,
        period_start=start,
        period_end=end,
        budget_tokens=plan.budget_tokens,
        spent_tokens=ledger.spent_tokens if ledger else 0,
        reserved_tokens=ledger.reserved_tokens if ledger else 0,
        by_key=by_key,
    )


def _key_usage(prefix: str | None, name: str, row: Mapping[str, Any] | None) -> KeyUsage:
    row = row or {}
    return KeyUsage(
        key_prefix=prefix,
        key_name=name,
        prompt_tokens=row.get("prompt") or 0,
        completion_tokens=row.get("completion") or 0,
        reserved_tokens=row.get("reserved") or 0,
        tasks=row.get("tasks") or 0,
    )
