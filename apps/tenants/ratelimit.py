"""Per-tenant rate limits: task submissions per minute (rpm) and worst-case
tokens per minute (tpm), atomic across any number of API processes.

Each limit is a token bucket of one minute's allowance that refills
continuously, kept as one number per bucket (GCRA: the "theoretical arrival
time" at which the bucket would be full again). A request of cost c on a limit
L per minute adds c × 60/L seconds to that time; it is admitted when the time
stays within 60 seconds of now. So a full bucket admits L at once, then L per
minute; a refused request changes nothing. Both limits are decided together:
a request takes from both buckets or from neither.

Where the state lives:
- ``settings.RATE_LIMIT_REDIS_URL`` set (the distributed mode): a Redis hash
  per tenant, changed by one Lua script (atomic in Redis), on Redis's clock.
- otherwise: the tenant's QuotaState row, changed by one conditional UPDATE
  whose row count tells admitted from refused, on this host's clock.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from apps.tenants import statements
from apps.tenants.models import Plan, QuotaState, Tenant

PERIOD_SECONDS = 60.0
# Float slack: 7 requests of 60/7 s each must add up to "within 60 s".
_EPSILON = 1e-6


@dataclass(frozen=True)
class Bucket:
    """One limit as the X-RateLimit headers report it; limit None: no limit."""

    limit: int | None
    remaining: int | None
    reset_seconds: int  # until the bucket is full again


@dataclass(frozen=True)
class RateLimits:
    allowed: bool
    requests: Bucket
    tokens: Bucket
    retry_after_seconds: int  # 0 when allowed, and for a peek


def consume(tenant: Tenant, plan: Plan, tokens: int) -> RateLimits:
    """Take one request and ``tokens`` from the tenant's buckets if both have room."""
    return _apply(tenant, plan, tokens, take=True)


def peek(tenant: Tenant, plan: Plan) -> RateLimits:
    """The buckets as they are, taking nothing (for headers and /api/v1/usage)."""
    return _apply(tenant, plan, 0, take=False)


# --- The arithmetic both back ends share ------------------------------------------------------

# (interval, cost) per bucket, requests first: the interval is the seconds one
# unit adds to the bucket's time, None for no limit.
Costs = tuple[tuple[float | None, int], tuple[float | None, int]]


def _interval(limit: int | None) -> float | None:
    """None for no limit, inf for a zero limit (nothing is ever admitted)."""
    if limit is None:
        return None
    return PERIOD_SECONDS / limit if limit > 0 else math.inf


def _without_inf(bucket: tuple[float | None, int]) -> tuple[float | None, int]:
    interval, cost = bucket
    return (None if interval == math.inf else interval, cost)


def _apply(tenant: Tenant, plan: Plan, tokens: int, *, take: bool) -> RateLimits:
    costs: Costs = ((_interval(plan.rpm), 1), (_interval(plan.tpm), tokens))
    blocked = any(interval == math.inf for interval, _ in costs)
    finite: Costs = (_without_inf(costs[0]), _without_inf(costs[1]))
    allowed, backlogs = _backend().apply(tenant, finite, take=take and not blocked)
    # What each bucket's backlog would be after taking this request.
    wanted = [
        0.0 if interval is None else math.inf if interval == math.inf else max(backlog, 0.0) + interval * cost
        for backlog, (interval, cost) in zip(backlogs, costs, strict=True)
    ]
    retry_after = 0
    if take and not allowed:
        over = max(want - PERIOD_SECONDS for want in wanted)
        # A zero limit never refills: look again in a period (the plan may change).
        retry_after = int(PERIOD_SECONDS) if over == math.inf else max(math.ceil(over - _EPSILON), 1)
    return RateLimits(
        allowed=allowed,
        requests=_bucket(plan.rpm, backlogs[0]),
        tokens=_bucket(plan.tpm, backlogs[1]),
        retry_after_seconds=retry_after,
    )


def _bucket(limit: int | None, backlog: float) -> Bucket:
    """``backlog``: seconds the bucket's time is ahead of now (0 or less: full)."""
    if limit is None:
        return Bucket(None, None, 0)
    if limit == 0:
        return Bucket(0, 0, 0)
    backlog = max(backlog, 0.0)
    remaining = math.floor((PERIOD_SECONDS - backlog) / (PERIOD_SECONDS / limit) + _EPSILON)
    return Bucket(limit, min(max(remaining, 0), limit), max(math.ceil(backlog - _EPSILON), 0))


def _fits(backlog_after: float) -> bool:
    return backlog_after <= PERIOD_SECONDS + _EPSILON


# --- Database back end ----------------------------------------------------------------------


class _DatabaseBuckets:
    """State in the tenant's QuotaState row; time from this host's clock."""

    FIELDS = statements.RATE_BUCKETS

    def apply(self, tenant: Tenant, costs: Costs, *, take: bool) -> tuple[bool, tuple[float, float]]:
        now = time.time()
        allowed = False
        state: tuple[float, float] | None = None  # the buckets' times, once read
        if take:
            # Every admission: through a cursor (apps.tenants.statements), where the ORM
            # compiled an UPDATE and a read-back; the UPDATE returns the times it wrote.
            added = {
                field: interval * cost
                for field, (interval, cost) in zip(self.FIELDS, costs, strict=True)
                if interval is not None
            }
            take_now = functools.partial(
                statements.take_rate_buckets, tenant.pk, now, added, now + PERIOD_SECONDS + _EPSILON
            )
            if added:
                state = take_now()
                allowed = state is not None
                if not allowed:
                    state = statements.rate_buckets(tenant.pk)
                    if state is None:  # the tenant has no row yet
                        QuotaState.objects.bulk_create([QuotaState(tenant=tenant)], ignore_conflicts=True)
                        state = take_now()
                        allowed = state is not None
            else:
                allowed = True
        if state is None:
            state = statements.rate_buckets(tenant.pk) or (0.0, 0.0)
        return allowed, (state[0] - now, state[1] - now)


# --- Redis back end ------------------------------------------------------------------------

# KEYS[1]: the tenant's hash. ARGV: period, requests interval, tokens interval
# (ms; 0: no limit), tokens, take (1/0). Returns {allowed, requests backlog,
# tokens backlog} in ms, after taking when allowed. Times are Redis's (TIME),
# so API hosts with skewed clocks agree; stored with microsecond precision.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local intervals = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local costs = {1, tonumber(ARGV[4])}
local stored = redis.call('HMGET', KEYS[1], 'r', 't')
local times, new = {}, {}
local allowed = 1
for i = 1, 2 do
  times[i] = tonumber(stored[i]) or 0
  new[i] = math.max(times[i], now) + intervals[i] * costs[i]
  if intervals[i] > 0 and new[i] - now > period + 0.001 then allowed = 0 end
end
if ARGV[5] ~= '1' then allowed = 0 end
if allowed == 1 then
  times = new
  redis.call('HSET', KEYS[1], 'r', string.format('%.3f', new[1]), 't', string.format('%.3f', new[2]))
  -- Past its times a bucket is full, which is what a missing key reads as.
  redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(new[1], new[2]) - now) + 1000)
end
return {allowed, string.format('%.3f', times[1] - now), string.format('%.3f', times[2] - now)}
"""


class _RedisBuckets:
    def __init__(self, url: str) -> None:
        import redis

        # Bounded waits: Redis down answers the request 503 (llmagentos.api_errors), never a hang.
        self._script = redis.Redis.from_url(url, **settings.REDIS_CLIENT_OPTIONS).register_script(_LUA)

    def apply(self, tenant: Tenant, costs: Costs, *, take: bool) -> tuple[bool, tuple[float, float]]:
        (requests_interval, _), (tokens_interval, tokens) = costs
        allowed, requests_backlog, tokens_backlog = self._script(
            keys=[f"llmagentos:ratelimit:{tenant.pk}"],
            args=[
                PERIOD_SECONDS * 1000,
                (requests_interval or 0) * 1000,
                (tokens_interval or 0) * 1000,
                tokens,
                1 if take else 0,
            ],
        )
        return bool(allowed), (float(requests_backlog) / 1000, float(tokens_backlog) / 1000)


_backends: dict[str, _RedisBuckets | _DatabaseBuckets] = {}
_backends_lock = threading.Lock()


def _backend() -> _RedisBuckets | _DatabaseBuckets:
    """One per process and configuration (a Redis client holds a connection pool)."""
    url = settings.RATE_LIMIT_REDIS_URL
    with _backends_lock:
        if url not in _backends:
            _backends[url] = _RedisBuckets(url) if url else _DatabaseBuckets()
        return _backends[url]
