"""The scheduling policy on small, readable scenarios (the properties are in test_policy_properties.py)."""

from __future__ import annotations

import math

from apps.scheduler.policy import FairScheduler


def drain(scheduler: FairScheduler, now: float, capped=()) -> list[str]:
    order = []
    while (entry := scheduler.next(now, capped)) is not None:
        order.append(entry.task_id)
    return order


def drain_n(scheduler: FairScheduler, now: float, n: int) -> list[str]:
    return [scheduler.next(now).task_id for _ in range(n)]


def test_a_flooder_waits_behind_its_own_work():
    """100 tasks from a flooder, then 5 from a quiet tenant: the quiet tenant is served at once."""
    scheduler = FairScheduler(aging_seconds=math.inf)
    for n in range(100):
        scheduler.add(f"flood{n}", "flooder", 1.0, "normal", 500, now=0.0)
    for n in range(5):
        scheduler.add(f"quiet{n}", "quiet", 1.0, "normal", 500, now=1.0)

    order = drain(scheduler, now=1.0)

    quiet_places = [order.index(f"quiet{n}") for n in range(5)]
    assert max(quiet_places) <= 10  # alternating with the flood, not after it
    assert order[-90:] == [f"flood{n}" for n in range(10, 100)]


def test_weights_split_a_busy_model():
    """Weight 3 against weight 1, equal costs, both backlogged: three tasks for one."""
    scheduler = FairScheduler(aging_seconds=math.inf)
    for n in range(40):
        scheduler.add(f"gold{n}", "gold", 3.0, "normal", 300, now=0.0)
        scheduler.add(f"free{n}", "free", 1.0, "normal", 300, now=0.0)

    first_twenty = drain_n(scheduler, now=0.0, n=20)

    assert sum(tid.startswith("gold") for tid in first_twenty) == 15


def test_a_returning_tenant_gets_no_credit_for_having_been_idle():
    """Idle while another tenant ran 50 tasks, a tenant comes back level with it, not 50 tasks ahead."""
    scheduler = FairScheduler(aging_seconds=math.inf)
    for n in range(60):
        scheduler.add(f"busy{n}", "busy", 1.0, "normal", 100, now=0.0)
    scheduler.add("early", "returning", 1.0, "normal", 100, now=0.0)
    assert "early" in drain_n(scheduler, now=0.0, n=51)  # with 50 of busy's tasks
    for n in range(10):
        scheduler.add(f"back{n}", "returning", 1.0, "normal", 100, now=1.0)

    order = drain_n(scheduler, now=1.0, n=10)

    assert sum(tid.startswith("back") for tid in order) == 5


def test_higher_classes_first_until_the_lower_ones_have_aged():
    # Equal class weights, so that tags read as tokens (the default weighs interactive flows 16×).
    scheduler = FairScheduler(aging_seconds=60.0, class_weights=(1, 1, 1))
    scheduler.add("report", "acme", 1.0, "batch", 100, now=0.0)
    scheduler.add("summary", "acme", 1.0, "normal", 100, now=0.0)
    scheduler.add("chat", "globex", 1.0, "interactive", 300, now=0.0)
    assert drain(scheduler, now=1.0) == ["chat", "summary", "report"]

    # After 120 s (two aging periods) the batch class competes as interactive,
    # by tag: acme's batch tag (100) is below globex's interactive tag (300),
    # so the old report goes first; the fresh normal task waits for both.
    scheduler.add("old-report", "acme", 1.0, "batch", 100, now=1.0)
    scheduler.add("new-summary", "initech", 1.0, "normal", 100, now=121.0)
    scheduler.add("new-chat", "globex", 1.0, "interactive", 100, now=121.0)
    assert [e.effective_class for e in scheduler.peek_order(121.0)] == ["interactive", "interactive", "normal"]
    assert drain(scheduler, now=121.0) == ["old-report", "new-chat", "new-summary"]


def test_aging_never_reorders_tenants_inside_a_class():
    """A flooder's old batch backlog ages the batch class; a quiet tenant's fresh batch task still goes first.

    Were tasks aged one by one, the 50 old ones would all compete a class
    higher than the fresh one and go before it.
    """
    scheduler = FairScheduler(aging_seconds=60.0)
    for n in range(50):
        scheduler.add(f"flood{n}", "flooder", 1.0, "batch", 100, now=0.0)
    scheduler.add("fresh", "quiet", 1.0, "batch", 100, now=500.0)

    order = drain(scheduler, now=500.0)

    assert order[:2] == ["flood0", "fresh"]


def test_no_credit_for_having_been_idle_while_an_aged_class_ran():
    """Batch aged to the top and ran alone there; an interactive tenant coming back shares the level with it.

    Its interactive tag starts at the level's virtual time, not where its
    class last dispatched: otherwise it would be owed everything batch ran.
    (Equal class weights, so that the tags alone decide.)
    """
    scheduler = FairScheduler(aging_seconds=10.0, class_weights=(1, 1, 1))
    scheduler.add("chat0", "chatty", 1.0, "interactive", 100, now=0.0)
    for n in range(30):
        scheduler.add(f"bulk{n}", "bulky", 1.0, "batch", 100, now=0.0)
    assert scheduler.next(now=0.0).task_id == "chat0"
    ran_alone = drain_n(scheduler, now=100.0, n=10)
    assert scheduler.peek_order(100.0, k=1)[0].effective_class == "interactive"  # batch has aged to the top
    for n in range(1, 6):
        scheduler.add(f"chat{n}", "chatty", 1.0, "interactive", 100, now=100.0)

    after = drain_n(scheduler, now=100.0, n=6)

    assert ran_alone == [f"bulk{n}" for n in range(10)]
    assert sum(tid.startswith("bulk") for tid in after) >= 2


def test_a_capped_tenant_is_passed_over_and_keeps_its_place():
    scheduler = FairScheduler(aging_seconds=math.inf)
    for n in range(3):
        scheduler.add(f"a{n}", "a", 1.0, "normal", 100, now=0.0)
        scheduler.add(f"b{n}", "b", 1.0, "normal", 100, now=0.0)
        scheduler.add(f"c{n}", "c", 1.0, "normal", 100, now=0.0)
    assert scheduler.position("a0", now=0.0) == 1

    # "a" is at its running cap: b and c are served, a's tag does not move.
    assert [scheduler.next(0.0, capped={"a"}).task_id for _ in range(2)] == ["b0", "c0"]
    assert scheduler.position("a0", now=0.0) == 1

    # A slot of "a" frees up: its task is first again, ahead of b and c.
    assert scheduler.next(0.0, capped=set()).task_id == "a0"


def test_critical_path_first_within_a_tenant():
    """rank (e.g. the longest chain of descendants) orders a tenant's own ready tasks."""
    scheduler = FairScheduler(aging_seconds=math.inf)
    scheduler.add("leaf", "acme", 1.0, "normal", 100, now=0.0, rank=0)
    scheduler.add("long-chain-root", "acme", 1.0, "normal", 100, now=1.0, rank=4)
    scheduler.add("short-chain-root", "acme", 1.0, "normal", 100, now=2.0, rank=1)
    assert drain(scheduler, now=2.0) == ["long-chain-root", "short-chain-root", "leaf"]


def test_an_overestimate_is_given_back_at_completion():
    """Estimated at prompt + max_tokens, charged at what was used: the tenant that used less goes first next."""
    scheduler = FairScheduler(aging_seconds=math.inf, class_weights=(1, 1, 1))  # tags in tokens
    for tenant in ("frugal", "verbose"):
        scheduler.add(f"{tenant}1", tenant, 1.0, "normal", 1000, now=0.0)
        scheduler.add(f"{tenant}2", tenant, 1.0, "normal", 1000, now=0.0)
    first, second = scheduler.next(0.0), scheduler.next(0.0)
    assert {first.tenant, second.tenant} == {"frugal", "verbose"}
    for entry in (first, second):
        used = 200 if entry.tenant == "frugal" else 1000
        scheduler.complete(entry.tenant, entry.priority_class, entry.estimated_cost, used)

    assert scheduler.tag("frugal", "normal") == 200.0
    assert scheduler.next(1.0).task_id == "frugal2"


def test_queue_positions_and_cancellation():
    scheduler = FairScheduler(aging_seconds=math.inf)
    for n in range(3):
        scheduler.add(f"t{n}", "acme", 1.0, "normal", 100, now=float(n))
    assert [scheduler.position(f"t{n}", now=3.0) for n in range(3)] == [1, 2, 3]
    assert scheduler.remove("t0") and not scheduler.remove("t0")
    assert scheduler.position("t2", now=3.0) == 2 and len(scheduler) == 2
    assert not scheduler.add("t1", "acme", 1.0, "normal", 100, now=3.0)  # already queued: unchanged
    assert [e.task_id for e in scheduler.peek_order(3.0)] == ["t1", "t2"]
