"""Discrete-event simulation of one model's workers: FIFO next to the platform's scheduling policy.

Pure Python, seeded, no Django. Tenants submit LLM tasks (Poisson or bursty
arrivals, lognormal prompt and completion lengths); ``--slots`` worker slots
serve them, each task occupying a slot for a prefill-plus-decode time. The
same arrivals are replayed under three orderings:

* ``fifo``       one queue in arrival order;
* ``class-fifo`` arrival order within priority classes (what Huey's own
                 priorities give: the platform's dispatch before the policy);
* ``policy``     apps.scheduler.policy.FairScheduler, estimating each task at
                 prompt + max_tokens and correcting to prompt + completion at
                 the end, with the platform's idle credit (``--idle-credit``);
* ``sfq``        the same policy with idle credit 0: plain start-time fair queuing;
* ``policy,preempt`` the policy with preemption (``run_preempting``): when tasks
                 wait on a full model, apps.scheduler.preemption_policy chooses
                 running tasks to suspend; each pays a suspend and a resume
                 cost (``--suspend-cost``, ``--resume-cost``; by default those
                 bench/preemption.py measured) and resumes where it stopped,
                 under the thrash guards (``--preempt-min-run``, ``--preempt-max``).

Scenarios (targets from the scheduling issue):

a. backlogged: four equal-weight tenants all offering more than their share
   (0.5×–4× the model's capacity): token shares within 5 % of equal, Jain ≥ 0.99;
b. flooder:    a quiet bursty tenant next to one submitting 10× its rate
   (saturating the model): quiet tenant's p99 wait ≤ 1.2× its p99 alone;
   also run with the flooder held to a running cap of half the slots (its
   plan's max_running), which only the policy can honour;
c. saturation: interactive tenants at 20 % of capacity while normal and
   batch tenants offer 140 %: interactive p99 wait ≤ one mean service time.
d. routed:     two models, one overloaded: a tenant submitting to a router over
   both, without routing (always the first) and routed by the wait estimate
   (strategy ``wait``; ``order`` under ``max_wait_seconds`` 30): its waits.

Waits are from arrival to dispatch; a task still queued when the run ends
counts with the wait it had so far (a lower bound). Shares count the tokens
(prompt + completion) of tasks dispatched in the measured window. Jain's
index is over each tenant's tokens divided by its weighted max-min fair
allocation of what was served (its demand is what it submitted).

    python bench/simulate.py [--quick] [--seed N] [--slots N] [--aging S] [--class-weights 16,4,1]
                             [--suspend-cost S] [--resume-cost S] [--preempt-min-run S] [--preempt-max N]
                             [--json PATH]

prints a table per scenario and exits 0.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from apps.scheduler.policy import CLASSES, FairScheduler  # noqa: E402
from apps.scheduler.preemption_policy import Guards, Running, Tags, choose_victims, preemptible  # noqa: E402

# settings.SCHEDULER_IDLE_CREDIT_TOKENS's default (this file does not import Django).
DEFAULT_IDLE_CREDIT = 50_000.0

# One worker slot's speed (a mid-size model on one GPU, per concurrent sequence).
PREFILL_TOKENS_PER_S = 4000.0
DECODE_TOKENS_PER_S = 40.0
OVERHEAD_S = 0.05


@dataclass(frozen=True)
class TenantLoad:
    """What one tenant submits. ``load`` is the share of the model's slot-time its tasks would take."""

    name: str
    load: float
    priority: str = "normal"
    weight: float = 1.0
    burst: float = 1.0  # mean tasks per arrival event (geometric); 1 = Poisson arrivals
    prompt_median: float = 400.0
    completion_median: float = 150.0
    max_tokens: int = 512


@dataclass
class Request:
    seq: int
    tenant: str
    priority: str
    weight: float
    arrival: float
    prompt: int
    completion: int
    max_tokens: int
    service: float
    start: float | None = None  # its first dispatch
    finish: float | None = None  # set by run_preempting only (inf until it ends); else start + service
    delay: float = 0.0  # time lost to preemption: suspended, waiting again, resuming
    preemptions: int = 0
    done: float = 0.0  # service seconds done before its last suspension
    progress: int = 0  # completion tokens generated before its last suspension
    suspended_at: float | None = None  # when it was last asked to suspend (it stops working then)

    @property
    def estimated(self) -> int:
        return self.prompt + self.max_tokens

    @property
    def actual(self) -> int:
        return self.prompt + self.completion


def draw_lengths(rng: random.Random, spec: TenantLoad) -> tuple[int, int, float]:
    prompt = min(16000, max(1, round(rng.lognormvariate(math.log(spec.prompt_median), 1.0))))
    completion = min(spec.max_tokens, max(1, round(rng.lognormvariate(math.log(spec.completion_median), 0.8))))
    service = OVERHEAD_S + prompt / PREFILL_TOKENS_PER_S + completion / DECODE_TOKENS_PER_S
    return prompt, completion, service


def mean_service(spec: TenantLoad, seed: int) -> float:
    rng = random.Random(seed)
    return statistics.fmean(draw_lengths(rng, spec)[2] for _ in range(4000))


def generate(specs: list[TenantLoad], slots: int, horizon: float, seed: int) -> list[Request]:
    """Every tenant's arrivals up to ``horizon``, merged in time order (the same for every policy)."""
    requests: list[Request] = []
    for index, spec in enumerate(specs):
        rng = random.Random(seed * 1000 + index)
        task_rate = spec.load * slots / mean_service(spec, seed + index)
        event_rate = task_rate / spec.burst
        t = rng.expovariate(event_rate)
        while t < horizon:
            size = 1 if spec.burst <= 1 else 1 + int(math.log(1 - rng.random()) / math.log(1 - 1 / spec.burst))
            for _ in range(size):
                prompt, completion, service = draw_lengths(rng, spec)
                requests.append(
                    Request(0, spec.name, spec.priority, spec.weight, t, prompt, completion, spec.max_tokens, service)
                )
            t += rng.expovariate(event_rate)
    requests.sort(key=lambda r: (r.arrival, r.tenant))
    for seq, request in enumerate(requests):
        request.seq = seq
    return requests


# ------------------------------------------------------------------ orderings


class Fifo:
    def __init__(self) -> None:
        self.queue: deque[Request] = deque()

    def add(self, request: Request, now: float) -> None:
        self.queue.append(request)

    def next(self, now: float, capped: set[str]) -> Request | None:
        return self.queue.popleft() if self.queue else None  # a FIFO cannot pass over its head

    def complete(self, request: Request, now: float) -> None:
        pass


class ClassFifo:
    def __init__(self) -> None:
        self.queues: dict[str, deque[Request]] = {name: deque() for name in CLASSES}

    def add(self, request: Request, now: float) -> None:
        self.queues[request.priority].append(request)

    def next(self, now: float, capped: set[str]) -> Request | None:
        for name in CLASSES:
            if self.queues[name]:
                return self.queues[name].popleft()
        return None

    def complete(self, request: Request, now: float) -> None:
        pass


class Policy:
    def __init__(
        self, aging_seconds: float, class_weights: tuple[float, ...] | None = None, idle_credit: float = 0.0
    ) -> None:
        self.scheduler = FairScheduler(aging_seconds, class_weights or FairScheduler().class_weights, idle_credit)
        self.requests: dict[int, Request] = {}

    def add(self, request: Request, now: float) -> None:
        self.requests[request.seq] = request
        self.scheduler.add(request.seq, request.tenant, request.weight, request.priority, request.estimated, now)

    def next(self, now: float, capped: set[str]) -> Request | None:
        entry = self.scheduler.next(now, capped)
        return None if entry is None else self.requests.pop(entry.task_id)

    def complete(self, request: Request, now: float) -> None:
        self.scheduler.complete(request.tenant, request.priority, request.estimated, request.actual)


class PreemptedPolicy(Policy):
    """The policy as the dispatcher charges it when generations are suspended
    (apps.scheduler.dispatcher): a task is charged per segment — what is left of its
    worst case when dispatched, corrected to the tokens the segment generated when it
    comes back, and to its prompt plus the rest at its end — so that it is charged
    about once in total however often it is suspended."""

    def __init__(self, aging_seconds: float, class_weights: tuple[float, ...] | None = None,
                 idle_credit: float = 0.0) -> None:
        super().__init__(aging_seconds, class_weights, idle_credit)
        self.charged: dict[int, tuple[float, int]] = {}  # seq -> (estimated cost charged, progress then)

    def add(self, request: Request, now: float) -> None:
        self.requests[request.seq] = request
        # A preempted task keeps its arrival: its place among its flow's tasks (suspend_task).
        self.scheduler.add(request.seq, request.tenant, request.weight, request.priority,
                           max(1, request.estimated - request.progress), now, enqueued_at=request.arrival)

    def next(self, now: float, capped: set[str]) -> Request | None:
        entry = self.scheduler.next(now, capped)
        if entry is None:
            return None
        request = self.requests.pop(entry.task_id)  # type: ignore[call-overload]  # the ids added are seqs
        self.charged[request.seq] = (entry.estimated_cost, request.progress)
        return request

    def requeue(self, request: Request, now: float) -> None:
        """Back in the queue, suspended: added first, then the segment's charge corrected
        (the refund must not be undone by lifting an emptied flow's tag)."""
        estimated, progress = self.charged.pop(request.seq)
        self.add(request, now)
        self.scheduler.complete(request.tenant, request.priority, estimated, max(0, request.progress - progress))

    def complete(self, request: Request, now: float) -> None:
        estimated, progress = self.charged.pop(request.seq)
        self.scheduler.complete(request.tenant, request.priority, estimated, max(0, request.actual - progress))


ORDERINGS: dict[str, Callable[[argparse.Namespace], object]] = {
    "fifo": lambda args: Fifo(),
    "class-fifo": lambda args: ClassFifo(),
    "policy": lambda args: Policy(args.aging, args.class_weights, args.idle_credit),
    "sfq": lambda args: Policy(args.aging, args.class_weights, 0.0),
}

# (column label, ordering, running caps per tenant): what every scenario runs; the
# "+preempt" ordering is the policy with preemption (run_preempting).
PREEMPT = "policy+preempt"
BASE_RUNS: list[tuple[str, str, dict[str, int]]] = [
    *((name, name, {}) for name in ORDERINGS), ("policy,preempt", PREEMPT, {})
]

# Preemption's costs, from bench/preemption.py on the tiny local model (docs/benchmarks.md,
# "Preemption"): suspend asked -> slot free, and claimed again -> next token; the p90s of
# the distributed runs of `bench/preemption.py --reps 9` (the slower backend: 33 ms and
# 27 ms), rounded up.
MEASURED_SUSPEND_S = 0.05
MEASURED_RESUME_S = 0.03
COSTS_SOURCE = ("p90s of bench/preemption.py --backend distributed --reps 9, tiny model, 2-core VM "
                "(docs/benchmarks.md)")


def replay(
    requests: list[Request], ordering: str, args: argparse.Namespace, horizon: float,
    caps: dict[str, int] | None = None,
) -> list[Request]:
    """``requests`` on ``args.slots`` slots under ``ordering`` (a key of ORDERINGS, or PREEMPT)."""
    if ordering != PREEMPT:
        return run(requests, ORDERINGS[ordering](args), args.slots, horizon, caps)
    model = Preempting(args.suspend_cost, args.resume_cost, args.preempt_min_run, args.preempt_max)
    policy = PreemptedPolicy(args.aging, args.class_weights, args.idle_credit)
    return run_preempting(requests, policy, args.slots, horizon, model, caps)


def run(
    requests: list[Request], ordering, slots: int, horizon: float, caps: dict[str, int] | None = None
) -> list[Request]:
    """Replay ``requests`` on ``slots`` slots until ``horizon``; returns copies with ``start`` filled in.

    ``caps``: tenants' running-task caps, passed to the ordering as the set of
    tenants at their cap at each decision (as the dispatcher will).
    """
    requests = [Request(**vars(r)) for r in requests]
    caps = caps or {}
    running = {tenant: 0 for tenant in caps}
    capped: set[str] = set()
    completions: list[tuple[float, int, Request]] = []
    free = slots
    index = 0
    while True:
        arrival = requests[index].arrival if index < len(requests) else math.inf
        done = completions[0][0] if completions else math.inf
        now = min(arrival, done)
        if now > horizon:
            break
        if done <= arrival:
            _, _, finished = heapq.heappop(completions)
            free += 1
            if finished.tenant in caps:
                running[finished.tenant] -= 1
                capped.discard(finished.tenant)
            ordering.complete(finished, now)
        else:
            ordering.add(requests[index], now)
            index += 1
        while free and (request := ordering.next(now, capped)) is not None:
            request.start = now
            free -= 1
            if request.tenant in caps:
                running[request.tenant] += 1
                if running[request.tenant] >= caps[request.tenant]:
                    capped.add(request.tenant)
            heapq.heappush(completions, (now + request.service, request.seq, request))
    return requests


@dataclass(frozen=True)
class Preempting:
    """Preemption as the dispatcher does it: the victims are chosen by
    apps.scheduler.preemption_policy.choose_victims after every event that leaves
    tasks waiting on a full model, with the thrash guards; each costs time."""

    suspend_s: float  # asked to suspend -> its slot is free; it makes no progress meanwhile
    resume_s: float  # dispatched again -> generating again (added to what is left of its service)
    min_run_s: float  # settings.PREEMPT_MIN_RUN_SECONDS
    max_per_task: int  # settings.PREEMPT_MAX_PER_TASK


@dataclass
class _Segment:
    """A task's run from one dispatch to its end or its suspension."""

    request: Request
    started: float
    work_from: float  # started + the resume cost
    version: int  # an event of an older version is stale
    leaving_at: float | None = None  # asked to suspend at


_DONE, _FREED, _RIPE = 0, 1, 2  # event kinds; at equal times an end comes before an arrival


def tokens_done(request: Request, work: float) -> int:
    """Completion tokens generated after ``work`` seconds of its service."""
    decoding = work - OVERHEAD_S - request.prompt / PREFILL_TOKENS_PER_S
    return max(0, min(request.completion, int(decoding * DECODE_TOKENS_PER_S)))


def run_preempting(
    requests: list[Request], policy: PreemptedPolicy, slots: int, horizon: float, model: Preempting,
    caps: dict[str, int] | None = None,
) -> list[Request]:
    """``run`` with preemption: after each event, when tasks wait and no slot is free,
    the running tasks that ``choose_victims`` names (for the first ``slots`` waiting
    tasks in the policy's order) stop working, free their slots ``suspend_s`` later
    and go back to the queue with what is left of their service; their next
    dispatch pays ``resume_s`` first. A freed slot goes to the policy's next task.
    Returns copies with ``start`` (first dispatch), ``finish`` and ``delay`` filled in."""
    requests = [Request(**vars(r)) for r in requests]
    caps = caps or {}
    guards = Guards(model.min_run_s, model.max_per_task)
    weights = {r.tenant: r.weight for r in requests}
    level_of = {name: level for level, name in enumerate(CLASSES)}
    running: dict[int, _Segment] = {}
    in_flight: Counter[str] = Counter()
    events: list[tuple[float, int, int, int]] = []  # (time, kind, seq, segment version)
    versions = iter(range(1, 1 << 62))
    # What waits, for the cheap test below: tenants per class level, oldest arrival per level.
    queued: list[Counter[str]] = [Counter() for _ in CLASSES]
    oldest: list[list[tuple[float, int]]] = [[] for _ in CLASSES]
    waiting: set[int] = set()
    free = slots
    index = 0

    def enqueue(request: Request, now: float) -> None:
        level = level_of[request.priority]
        queued[level][request.tenant] += 1
        heapq.heappush(oldest[level], (request.arrival, request.seq))
        waiting.add(request.seq)
        if request.seq in policy.charged:
            policy.requeue(request, now)
        else:
            policy.add(request, now)

    def may_preempt(now: float, holders: list[Running]) -> bool:
        """False only when choose_victims cannot choose anything: no running task may be
        preempted, or no waiting task can outrank one, whatever the first waiting tasks
        are (it spares the O(queue) peek_order at most decisions; the answer is the same)."""
        candidates = [task for task in holders if preemptible(task, now, guards)]
        if not candidates:
            return False
        if any(task.leaving for task in holders):
            return True
        reach: dict[int, int] = {}  # base level -> the highest level its tasks may have aged to
        for level in range(len(CLASSES)):
            heap = oldest[level]
            while heap and heap[0][1] not in waiting:
                heapq.heappop(heap)
            if heap:
                reach[level] = level - min(level, int((now - heap[0][0]) // policy.scheduler.aging_seconds))
        if not reach:
            return False
        best, lowest = min(reach.values()), max(level_of[task.priority_class] for task in candidates)
        if best != lowest:
            return best < lowest
        # Same level, the tag test: some waiting tenant's tag behind a running one's in their class.
        tag, name = policy.scheduler.tag, CLASSES[best]
        ahead = max((tag(t.tenant, name) for t in candidates if t.priority_class == name), default=-math.inf)
        if any(count and tag(tenant, name) < ahead for tenant, count in queued[best].items()):
            return True
        # Same level: some waiting tenant must be able to be under its share, some running one over.
        at_level = Counter(t.tenant for t in holders if level_of[t.priority_class] == best)
        maybe = {tenant for base, top in reach.items() if base >= best and top <= best for tenant in queued[base]
                 if queued[base][tenant]}
        total = sum(weights[t] for t in at_level)
        most = total + sum(weights[t] for t in maybe - at_level.keys())
        slack = 1e-6
        under = any(at_level[t] + 1 <= slots * weights[t] / (total + (weights[t] if t not in at_level else 0)) + slack
                    for t in maybe)
        over = any(at_level[t.tenant] > slots * weights[t.tenant] / most - slack
                   for t in candidates if level_of[t.priority_class] == best)
        return under and over

    def start(request: Request, now: float) -> None:
        waiting.discard(request.seq)
        queued[level_of[request.priority]][request.tenant] -= 1
        resume = 0.0
        if request.start is None:
            request.start, request.finish = now, math.inf
        else:
            resume = model.resume_s
            assert request.suspended_at is not None
            request.delay += now + resume - request.suspended_at
        segment = _Segment(request, now, now + resume, next(versions))
        running[request.seq] = segment
        in_flight[request.tenant] += 1
        heapq.heappush(events, (segment.work_from + request.service - request.done, _DONE, request.seq,
                                segment.version))
        if model.min_run_s > 0:  # it becomes a candidate then: a decision point, as a dispatcher round
            heapq.heappush(events, (now + model.min_run_s, _RIPE, request.seq, segment.version))

    while True:
        arrival = requests[index].arrival if index < len(requests) else math.inf
        at = events[0][0] if events else math.inf
        now = min(arrival, at)
        if now > horizon:
            break
        if at <= arrival:
            _, kind, seq, version = heapq.heappop(events)
            segment = running.get(seq)
            if segment is None or segment.version != version:
                continue
            if kind != _RIPE:
                del running[seq]
                free += 1
                request = segment.request
                in_flight[request.tenant] -= 1
                if kind == _DONE:
                    request.finish = now
                    policy.complete(request, now)
                else:
                    assert segment.leaving_at is not None
                    request.done += max(0.0, segment.leaving_at - segment.work_from)
                    request.progress = tokens_done(request, request.done)
                    request.preemptions += 1
                    request.suspended_at = segment.leaving_at
                    enqueue(request, now)
        else:
            enqueue(requests[index], now)
            index += 1
        capped = {tenant for tenant, cap in caps.items() if in_flight[tenant] >= cap}
        while free and (chosen := policy.next(now, capped)) is not None:
            free -= 1
            start(chosen, now)
            if chosen.tenant in caps and in_flight[chosen.tenant] >= caps[chosen.tenant]:
                capped.add(chosen.tenant)
        if free or not len(policy.scheduler):
            continue
        holders = [
            Running(seq, s.request.tenant, s.request.priority, s.started, s.request.preemptions, True,
                    s.leaving_at is not None)
            for seq, s in running.items()
        ]
        if not may_preempt(now, holders):
            continue
        room = {tenant: max(0, cap - in_flight[tenant]) for tenant, cap in caps.items()}
        order = policy.scheduler.peek_order(now, capped, slots)
        tags = Tags({(t.tenant, t.priority_class): policy.scheduler.tag(t.tenant, t.priority_class)
                     for t in holders}, policy.scheduler.class_weights)
        for preemption in choose_victims(order, holders, slots, now, weights, guards, room, tags):
            segment = running[preemption.victim.task_id]  # type: ignore[index]
            segment.leaving_at = now
            if segment.work_from + segment.request.service - segment.request.done <= now + model.suspend_s:
                continue  # it ends before its suspension would take effect
            segment.version = next(versions)
            heapq.heappush(events, (now + model.suspend_s, _FREED, segment.request.seq, segment.version))
    return requests


# ------------------------------------------------------------------- measures


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def max_min_fair(demand: dict[str, float], weight: dict[str, float], capacity: float) -> dict[str, float]:
    """Weighted water-filling: no tenant gets more than it asked for, the rest is split by weight."""
    share = {name: 0.0 for name in demand}
    active = {name for name in demand if demand[name] > 0}
    left = capacity
    while active and left > 1e-9:
        total_weight = sum(weight[name] for name in active)
        level = left / total_weight
        satisfied = {name for name in active if demand[name] - share[name] <= level * weight[name]}
        if not satisfied:
            for name in active:
                share[name] += level * weight[name]
            break
        for name in satisfied:
            left -= demand[name] - share[name]
            share[name] = demand[name]
        active -= satisfied
    return share


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if values and any(values) else float("nan")


@dataclass
class Outcome:
    share: dict[str, float]  # fraction of the tokens dispatched in the window
    p50: dict[str, float]
    p99: dict[str, float]
    p99_latency: dict[str, float]  # wait + service, for tasks that started
    jain: float
    mean_service: float
    dispatched: int = 0
    censored: dict[str, float] = field(default_factory=dict)  # fraction of waits that are lower bounds
    throughput: float = 0.0  # tokens (prompt + completion) of the tasks that ended in the window, per second
    preemptions: int = 0  # suspensions of the tasks that arrived in the window


def measure(done: list[Request], specs: list[TenantLoad], warmup: float, horizon: float) -> Outcome:
    window = [r for r in done if warmup <= r.arrival <= horizon]
    served = [r for r in done if r.start is not None and warmup <= r.start <= horizon]
    tokens = {s.name: 0.0 for s in specs}
    for request in served:
        tokens[request.tenant] += request.actual
    total = sum(tokens.values()) or 1.0
    demand = {s.name: sum(r.actual for r in window if r.tenant == s.name) for s in specs}
    fair = max_min_fair(demand, {s.name: s.weight for s in specs}, sum(tokens.values()))
    waits: dict[str, list[float]] = {s.name: [] for s in specs}
    censored = {s.name: 0 for s in specs}
    for request in window:
        waits[request.tenant].append((request.start if request.start is not None else horizon) - request.arrival)
        censored[request.tenant] += request.start is None
    return Outcome(
        share={name: tokens[name] / total for name in tokens},
        p50={name: percentile(w, 0.50) for name, w in waits.items()},
        p99={name: percentile(w, 0.99) for name, w in waits.items()},
        p99_latency={s.name: percentile([r.start - r.arrival + r.service + r.delay for r in window
                                         if r.tenant == s.name and r.start is not None], 0.99) for s in specs},
        jain=jain([tokens[name] / fair[name] for name in tokens if fair[name] > 0]),
        mean_service=statistics.fmean(r.service for r in served) if served else float("nan"),
        dispatched=len(served),
        censored={name: censored[name] / max(1, len(waits[name])) for name in waits},
        throughput=sum(r.actual for r in done if r.start is not None
                       and warmup <= (r.finish if r.finish is not None else r.start + r.service) <= horizon)
        / (horizon - warmup),
        preemptions=sum(r.preemptions for r in window),
    )


# ------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    specs: list[TenantLoad]
    horizon: float
    warmup: float
    check: Callable[[dict[str, Outcome], dict[str, Outcome]], list[tuple[str, str, bool]]]
    alone: list[str] = field(default_factory=list)  # tenants also run by themselves, for comparison
    extra_runs: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)


def check_backlogged(results: dict[str, Outcome], alone: dict[str, Outcome]) -> list[tuple[str, str, bool]]:
    lines = []
    for name, outcome in results.items():
        n = len(outcome.share)
        worst = max(abs(share * n - 1) for share in outcome.share.values())
        text = f"largest deviation from an equal share {worst:.1%} (≤ 5 %), Jain {outcome.jain:.4f} (≥ 0.99)"
        ok = worst <= 0.05 and outcome.jain >= 0.99
        if outcome.preemptions and "policy" in results:
            # What preemption costs: its suspend and resume times, and the work redone.
            loss = 1 - outcome.throughput / results["policy"].throughput
            text += f"; {outcome.preemptions} preemptions, throughput {loss:.1%} below 'policy' (≤ 5 %)"
            ok = ok and loss <= 0.05
        lines.append((name, text, ok))
    return lines


def check_flooder(results: dict[str, Outcome], alone: dict[str, Outcome]) -> list[tuple[str, str, bool]]:
    base = alone["quiet"]
    lines = []
    for name, outcome in results.items():
        ratio = outcome.p99["quiet"] / base.p99["quiet"] if base.p99["quiet"] > 0 else math.inf
        lines.append((name, f"quiet p99 wait {outcome.p99['quiet']:.2f} s vs {base.p99['quiet']:.2f} s alone: "
                      f"{ratio:.2f}× (≤ 1.2×), {outcome.p99['quiet'] - base.p99['quiet']:.2f} s more "
                      f"= {(outcome.p99['quiet'] - base.p99['quiet']) / outcome.mean_service:.2f} mean service times; "
                      f"p99 wait+service {outcome.p99_latency['quiet'] / base.p99_latency['quiet']:.2f}× alone",
                      ratio <= 1.2))
    return lines


def check_saturation(results: dict[str, Outcome], alone: dict[str, Outcome]) -> list[tuple[str, str, bool]]:
    lines = []
    for name, outcome in results.items():
        worst = max(outcome.p99[t] for t in ("chat-a", "chat-b"))
        lines.append((name, f"interactive p99 wait {worst:.2f} s vs mean service {outcome.mean_service:.2f} s "
                      f"(≤ 1×: {worst / outcome.mean_service:.2f}×)", worst <= outcome.mean_service))
    return lines


def scenarios(quick: bool) -> list[Scenario]:
    horizon, warmup = (900.0, 120.0) if quick else (3600.0, 300.0)
    return [
        Scenario(
            "a", "backlogged: four equal-weight tenants offering 0.5×, 1×, 2× and 4× the model's capacity",
            [
                TenantLoad("t-0.5x", 0.5, max_tokens=256),
                TenantLoad("t-1x", 1.0, max_tokens=512),
                TenantLoad("t-2x", 2.0, max_tokens=1024, prompt_median=1200),
                TenantLoad("t-4x", 4.0, max_tokens=512),
            ],
            horizon, warmup, check_backlogged,
        ),
        Scenario(
            "b", "flooder: a quiet bursty tenant (12 % of capacity, bursts of ~8) next to one at 10× its rate",
            [TenantLoad("quiet", 0.12, burst=8.0), TenantLoad("flooder", 1.2)],
            horizon, warmup, check_flooder, alone=["quiet"],
            # The plan's running cap at half the slots, which only the policy can honour.
            extra_runs=[("policy,cap 8", "policy", {"flooder": 8})],
        ),
        Scenario(
            "c", "saturation: interactive at 20 % of capacity, normal and batch offering 140 %",
            [
                TenantLoad("chat-a", 0.1, priority="interactive", completion_median=80, max_tokens=256),
                TenantLoad("chat-b", 0.1, priority="interactive", completion_median=80, max_tokens=256),
                TenantLoad("api-a", 0.3, priority="normal"),
                TenantLoad("api-b", 0.3, priority="normal", burst=8.0),
                TenantLoad("bulk-a", 0.4, priority="batch", max_tokens=1024),
                TenantLoad("bulk-b", 0.4, priority="batch", max_tokens=1024, prompt_median=2000),
            ],
            horizon, warmup, check_saturation,
        ),
    ]


# ------------------------------------------------------------ (d) routed models

ROUTED_CANDIDATES = ("model-a", "model-b")  # the router's candidates, in its order
ROUTER = "router"
ROUTING_MODES = {
    "no routing": "the routed tenant names model-a, the router's first candidate",
    "order, bound 30 s": "model-a unless its wait estimate is over 30 s (max_wait_seconds), then model-b",
    "wait": "the candidate with the lower wait estimate (strategy 'wait')",
}
WAIT_BOUND_SECONDS = 30.0


def estimated_wait(queued: int, running: int, slots: int, mean_service_s: float) -> float:
    """The platform's estimate for a task joining the back of a model's queue
    (apps.scheduler.estimates: QueueStats.start_after(queued + 1))."""
    ahead_beyond_free = queued + 1 - max(0, slots - running)
    return 0.0 if ahead_beyond_free <= 0 else ahead_beyond_free * mean_service_s / slots


def pick(mode: str, waits: dict[str, float]) -> str:
    """The candidate a routed task goes to, as apps.catalog.routing orders them."""
    if mode == "no routing":
        return ROUTED_CANDIDATES[0]
    if mode == "wait":
        return min(ROUTED_CANDIDATES, key=lambda name: waits[name])  # ties keep the router's order
    within = [name for name in ROUTED_CANDIDATES if waits[name] <= WAIT_BOUND_SECONDS]
    return within[0] if within else min(ROUTED_CANDIDATES, key=lambda name: waits[name])


def run_routed(
    requests: list[Request], targets: dict[str, str], mode: str, args: argparse.Namespace, horizon: float,
    mean_service_s: float,
) -> tuple[list[Request], dict[str, int]]:
    """Replay ``requests`` on two models of ``args.slots`` slots each, each ordered by the
    policy; a tenant's tasks go to its model in ``targets``, a routed tenant's (ROUTER)
    to the candidate ``mode`` picks at arrival from the models' wait estimates.
    Returns copies with ``start`` filled in and how many routed tasks each model got."""
    requests = [Request(**vars(r)) for r in requests]
    orderings = {name: Policy(args.aging, args.class_weights, args.idle_credit) for name in ROUTED_CANDIDATES}
    queued = dict.fromkeys(ROUTED_CANDIDATES, 0)
    running = dict.fromkeys(ROUTED_CANDIDATES, 0)
    routed = dict.fromkeys(ROUTED_CANDIDATES, 0)
    completions: list[tuple[float, int, Request, str]] = []
    index = 0

    def dispatch(model: str, now: float) -> None:
        while running[model] < args.slots and (request := orderings[model].next(now, set())) is not None:
            request.start = now
            queued[model] -= 1
            running[model] += 1
            heapq.heappush(completions, (now + request.service, request.seq, request, model))

    while True:
        arrival = requests[index].arrival if index < len(requests) else math.inf
        done = completions[0][0] if completions else math.inf
        now = min(arrival, done)
        if now > horizon:
            break
        if done <= arrival:
            _, _, finished, model = heapq.heappop(completions)
            running[model] -= 1
            orderings[model].complete(finished, now)
        else:
            request = requests[index]
            index += 1
            model = targets[request.tenant]
            if model == ROUTER:
                waits = {name: estimated_wait(queued[name], running[name], args.slots, mean_service_s)
                         for name in ROUTED_CANDIDATES}
                model = pick(mode, waits)
                routed[model] += 1
            orderings[model].add(request, now)
            queued[model] += 1
        dispatch(model, now)
    return requests, routed


def routed_scenario(args: argparse.Namespace) -> dict:
    """(d) Two models of ``args.slots`` slots each: model-a's own tenant offers 80 % of its
    capacity, model-b's 30 %, and a tenant submitting to a router over [model-a, model-b]
    50 % of one model's: model-a is overloaded (130 %) unless routing sends some of it
    to model-b. Its waits with and without routing."""
    horizon, warmup = (900.0, 120.0) if args.quick else (3600.0, 300.0)
    specs = [TenantLoad("a-direct", 0.8), TenantLoad("b-direct", 0.3), TenantLoad("routed", 0.5)]
    targets = {"a-direct": "model-a", "b-direct": "model-b", "routed": ROUTER}
    requests = generate(specs, args.slots, horizon, args.seed)
    # The platform estimates with the measured mean service of the model's finished
    # tasks; every tenant here draws the same lengths, so that mean is this one.
    mean_service_s = mean_service(specs[0], args.seed)
    print(f"\n(d) routed: two models of {args.slots} slots; model-a's tenant at 80 % of its capacity, "
          f"model-b's at 30 %, a routed tenant at 50 % over [model-a, model-b]; {len(requests)} tasks "
          f"over {horizon:g} s, measured after {warmup:g} s")
    print(f"{'tenant':<10}" + "".join(f"{mode + ' p50/p99':>28}" for mode in ROUTING_MODES))
    results = {}
    for mode in ROUTING_MODES:
        done, routed = run_routed(requests, targets, mode, args, horizon, mean_service_s)
        results[mode] = (measure(done, specs, warmup, horizon), routed)
    for spec in specs:
        row = f"{spec.name:<10}"
        for outcome, _ in results.values():
            lower = "≥" if outcome.censored[spec.name] > 0.01 else " "
            row += f"{outcome.p50[spec.name]:>18.1f} {lower}{outcome.p99[spec.name]:>8.1f}"
        print(row)
    print(f"{'to model-b':<10}" + "".join(
        f"{routed['model-b'] / max(1, sum(routed.values())):>28.1%}" for _, routed in results.values()))
    base = results["no routing"][0].p99["routed"]
    verdicts = []
    for mode in ROUTING_MODES:
        if mode == "no routing":
            continue
        outcome = results[mode][0]
        worst = max(outcome.p99.values())
        text = (f"routed tenant's p99 wait {outcome.p99['routed']:.1f} s against {base:.1f} s without routing; "
                f"worst tenant's p99 {worst:.1f} s vs mean service {outcome.mean_service:.2f} s")
        verdicts.append((mode, text, outcome.p99["routed"] < base))
    for name, text, ok in verdicts:
        print(f"  {'meets' if ok else 'MISSES'} target (shorter than without routing) — {name}: {text}")
    return {
        "title": "routed: model-a overloaded without routing",
        "modes": ROUTING_MODES,
        "results": {mode: {**vars(outcome), "routed_to": routed} for mode, (outcome, routed) in results.items()},
        "verdicts": [{"mode": n, "text": t, "meets": ok} for n, t, ok in verdicts],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="900 simulated seconds per run instead of 3600")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slots", type=int, default=16, help="worker slots serving the model")
    parser.add_argument("--aging", type=float, default=300.0, help="the policy's aging_seconds")
    parser.add_argument("--class-weights", type=lambda text: tuple(float(w) for w in text.split(",")),
                        help="the policy's class_weights, e.g. 16,4,1 (default: the policy's own)")
    parser.add_argument("--idle-credit", type=float, default=DEFAULT_IDLE_CREDIT,
                        help="the policy's idle_credit in tokens (default: the platform's, "
                             "settings.SCHEDULER_IDLE_CREDIT_TOKENS; the 'sfq' column has 0)")
    parser.add_argument("--suspend-cost", type=float, default=MEASURED_SUSPEND_S,
                        help=f"seconds from a suspension asked to its slot free (default {MEASURED_SUSPEND_S:g}: "
                             "measured, see the run's first lines)")
    parser.add_argument("--resume-cost", type=float, default=MEASURED_RESUME_S,
                        help=f"seconds from a suspended task's dispatch to its next token "
                             f"(default {MEASURED_RESUME_S:g}: measured)")
    parser.add_argument("--preempt-min-run", type=float, default=0.5,
                        help="seconds a segment runs before it may be preempted "
                             "(settings.PREEMPT_MIN_RUN_SECONDS's default)")
    parser.add_argument("--preempt-max", type=int, default=3,
                        help="preemptions per task at most (settings.PREEMPT_MAX_PER_TASK's default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    class_weights = args.class_weights or FairScheduler().class_weights
    report = {"seed": args.seed, "slots": args.slots, "aging_seconds": args.aging,
              "class_weights": class_weights, "scenarios": {}}
    print(f"seed {args.seed}, {args.slots} slots, policy aging {args.aging:g} s, "
          f"class weights {':'.join(f'{w:g}' for w in class_weights)}, "
          f"{'quick' if args.quick else 'full'} run; waits in seconds")
    measured = (args.suspend_cost, args.resume_cost) == (MEASURED_SUSPEND_S, MEASURED_RESUME_S)
    print(f"'policy,preempt': the policy with preemption (apps.scheduler.preemption_policy): suspend "
          f"{args.suspend_cost * 1000:g} ms, resume {args.resume_cost * 1000:g} ms "
          f"({'measured: ' + COSTS_SOURCE if measured else 'given on the command line'}), "
          f"min run {args.preempt_min_run:g} s, at most {args.preempt_max} per task")
    report["preemption"] = {"suspend_s": args.suspend_cost, "resume_s": args.resume_cost,
                            "min_run_s": args.preempt_min_run, "max_per_task": args.preempt_max,
                            "costs_from": COSTS_SOURCE if measured else "command line"}
    for scenario in scenarios(args.quick):
        requests = generate(scenario.specs, args.slots, scenario.horizon, args.seed)
        runs = BASE_RUNS + scenario.extra_runs
        results = {
            label: measure(replay(requests, ordering, args, scenario.horizon, caps),
                           scenario.specs, scenario.warmup, scenario.horizon)
            for label, ordering, caps in runs
        }
        alone = {}
        for tenant in scenario.alone:
            specs = [s for s in scenario.specs if s.name == tenant]
            only = [r for r in requests if r.tenant == tenant]
            done = run(only, Policy(args.aging, args.class_weights, args.idle_credit), args.slots, scenario.horizon)
            alone[tenant] = measure(done, specs, scenario.warmup, scenario.horizon)
        print(f"\n({scenario.key}) {scenario.title}; {len(requests)} tasks over {scenario.horizon:g} s, "
              f"measured after {scenario.warmup:g} s")
        header = f"{'tenant':<10}{'class':<12}" + "".join(f"{name + ' share/p50/p99':>28}" for name in results)
        if alone:
            header += f"{'alone p50/p99':>18}"
        print(header)
        for spec in scenario.specs:
            row = f"{spec.name:<10}{spec.priority:<12}"
            for o in results.values():
                lower = "≥" if o.censored[spec.name] > 0.01 else " "
                row += f"{o.share[spec.name]:>11.1%} {o.p50[spec.name]:>7.1f} {lower}{o.p99[spec.name]:>7.1f}"
            if spec.name in alone:
                row += f"{alone[spec.name].p50[spec.name]:>10.2f}{alone[spec.name].p99[spec.name]:>8.2f}"
            print(row)
        print(f"{'Jain':<22}" + "".join(f"{o.jain:>28.4f}" for o in results.values()))
        print(f"{'mean service (s)':<22}" + "".join(f"{o.mean_service:>28.2f}" for o in results.values()))
        print(f"{'tokens/s ended':<22}" + "".join(f"{o.throughput:>28.0f}" for o in results.values()))
        print(f"{'preemptions':<22}" + "".join(f"{o.preemptions:>28d}" for o in results.values()))
        verdicts = scenario.check(results, alone)
        for name, text, ok in verdicts:
            print(f"  {'meets' if ok else 'MISSES'} target — {name}: {text}")
        report["scenarios"][scenario.key] = {
            "title": scenario.title,
            "results": {name: vars(outcome) for name, outcome in results.items()},
            "alone": {name: vars(outcome) for name, outcome in alone.items()},
            "verdicts": [{"ordering": n, "text": t, "meets": ok} for n, t, ok in verdicts],
        }
    report["scenarios"]["d"] = routed_scenario(args)
    print("\n≥: more than 1 % of those tasks were still queued at the end; the figure is a lower bound.")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
