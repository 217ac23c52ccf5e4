"""The pure choice among a routed model's candidates (apps.catalog.routing): rules narrow,
the strategy orders (ties keep the router's order), the wait bound moves slow candidates
last, and a candidate the submission left out (the tenant may not use it) never appears."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import pytest

from apps.catalog.routing import CandidateState, RouteRequest, parse_config, route, task_cost, within_wait

ASKED = RouteRequest(tenant="acme", metadata={}, language="en")


def _states(**fields: dict) -> dict[str, CandidateState]:
    return {name: CandidateState(**{"prompt_tokens": 5, **values}) for name, values in fields.items()}


def test_order_keeps_the_listed_order_of_the_eligible():
    config = parse_config({"candidates": ["a", {"model": "b", "languages": ["zh"]}, "c"]})

    assert route(config, ASKED, _states(a={}, b={}, c={})) == ["a", "c"]
    assert route(config, ASKED, _states(b={}, c={})) == ["c"]  # "a" left out: never chosen


def test_wait_puts_the_lowest_estimate_first_and_unknown_last():
    config = parse_config({"candidates": ["a", "b", "c"], "strategy": "wait"})
    states = _states(a={"wait_seconds": None}, b={"wait_seconds": 9.0}, c={"wait_seconds": 1.0})

    assert route(config, ASKED, states) == ["c", "b", "a"]


def test_price_puts_the_cheapest_first_and_unpriced_last():
    config = parse_config({"candidates": ["a", "b", "c"], "strategy": "price"})
    states = _states(a={}, b={"cost": Decimal("0.2")}, c={"cost": Decimal("0.1")})

    assert route(config, ASKED, states) == ["c", "b", "a"]


def test_weights_draw_in_proportion():
    config = parse_config({"candidates": [{"model": "a", "weight": 3}, {"model": "b", "weight": 1}],
                           "strategy": "weights"})
    rng = random.Random(7)
    firsts = [route(config, ASKED, _states(a={}, b={}), rng)[0] for _ in range(4000)]

    assert 0.7 < firsts.count("a") / len(firsts) < 0.8  # 3 : 1, seeded


def test_the_wait_bound_moves_slow_candidates_last_soonest_first():
    config = parse_config({"candidates": ["a", "b", "c", "d"], "max_wait_seconds": 10})
    states = _states(a={"wait_seconds": math.inf}, b={"wait_seconds": 50.0}, c={"wait_seconds": None},
                     d={"wait_seconds": 2.0})

    assert within_wait(config, ["a", "b", "c", "d"], states) == ["c", "d", "b", "a"]


@pytest.mark.parametrize(("prompt", "completion", "prices", "cost"), [
    (7, 7, ("0.5", "1.5"), Decimal("0.014")),
    (1000, 0, ("2", None), Decimal("2")),
    (3, 3, (None, None), None),
])
def test_task_cost(prompt, completion, prices, cost):
    assert task_cost(prompt, completion, *(None if p is None else Decimal(p) for p in prices)) == cost
