"""Routed models: the router's config and the pure choice among its candidates.

A routed model is an LLMModel whose ``adapter`` is ROUTER_ADAPTER; it never
runs. Its ``adapter_config`` names, in order, the models that may run a task
submitted to it, each with the rules that must hold for that candidate to be
eligible, and the strategy that orders the eligible ones:

    {"candidates": [
        {"model": "small", "max_prompt_tokens": 200, "languages": ["en"]},
        {"model": "large", "languages": ["en"]},
        {"model": "multilingual", "metadata": {"task": ["translation", "chat"]}},
        "fallback"
     ],
     "strategy": "order",          # or "wait", "price", "weights"
     "max_wait_seconds": 30}       # optional: skip a candidate estimated to wait longer

A candidate given as a plain name has no rules. Rules, all of which must hold:
``min_prompt_tokens`` / ``max_prompt_tokens`` (the prompt as that candidate's
tokenizer counts it, else the estimate), ``languages`` (ISO 639-1 codes of the
detected language), ``metadata`` (tag → value or list of accepted values, from
the request's ``metadata``), ``tenants`` (slugs). ``weight`` (> 0, default 1)
is used by the ``weights`` strategy.

Nothing here touches Django: the submission (apps.tasks.routed) gathers the
inputs — which candidates the tenant may use, their token counts, wait
estimates and prices — and ``route`` orders them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

ROUTER_ADAPTER = "router"

STRATEGIES = ("order", "wait", "price", "weights")
_RULE_KEYS = frozenset({"min_prompt_tokens", "max_prompt_tokens", "languages", "metadata", "tenants"})
_CANDIDATE_KEYS = _RULE_KEYS | {"model", "weight"}
_CONFIG_KEYS = frozenset({"candidates", "strategy", "max_wait_seconds"})


class RouterConfigError(ValueError):
    """The router's config is refused; ``param`` names the field at fault (under adapter_config)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class CandidateRule:
    model: str
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    languages: frozenset[str] | None = None
    metadata: Mapping[str, frozenset[str]] = field(default_factory=dict)
    tenants: frozenset[str] | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class RouterConfig:
    candidates: tuple[CandidateRule, ...]
    strategy: str = "order"
    max_wait_seconds: float | None = None

    @property
    def uses_language(self) -> bool:
        return any(candidate.languages is not None for candidate in self.candidates)

    @property
    def uses_wait(self) -> bool:
        return self.strategy == "wait" or self.max_wait_seconds is not None


def _int_or_none(raw: Any, param: str) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise RouterConfigError("must be a whole number >= 0", param)
    return raw


def _strings(raw: Any, param: str) -> frozenset[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(item, str) and item for item in raw):
        raise RouterConfigError("must be a non-empty list of strings", param)
    return frozenset(raw)


def _candidate(raw: Any, at: str) -> CandidateRule:
    if isinstance(raw, str):
        raw = {"model": raw}
    if not isinstance(raw, dict):
        raise RouterConfigError("must be a model name or an object with a 'model'", at)
    unknown = sorted(set(raw) - _CANDIDATE_KEYS)
    if unknown:
        raise RouterConfigError(f"unknown rule {unknown[0]!r}; rules: {', '.join(sorted(_RULE_KEYS))}",
                                f"{at}.{unknown[0]}")
    name = raw.get("model")
    if not isinstance(name, str) or not name:
        raise RouterConfigError("a candidate names its model", f"{at}.model")
    low = _int_or_none(raw.get("min_prompt_tokens"), f"{at}.min_prompt_tokens")
    high = _int_or_none(raw.get("max_prompt_tokens"), f"{at}.max_prompt_tokens")
    if low is not None and high is not None and low > high:
        raise RouterConfigError("is above max_prompt_tokens", f"{at}.min_prompt_tokens")
    tags = raw.get("metadata", {})
    if not isinstance(tags, dict):
        raise RouterConfigError("must be an object: tag → value or list of values", f"{at}.metadata")
    weight = raw.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
        raise RouterConfigError("must be a number > 0", f"{at}.weight")
    return CandidateRule(
        model=name,
        min_prompt_tokens=low,
        max_prompt_tokens=high,
        languages=None if raw.get("languages") is None
        else frozenset(code.lower() for code in _strings(raw["languages"], f"{at}.languages")),
        metadata={tag: _strings(value, f"{at}.metadata.{tag}") for tag, value in tags.items()},
        tenants=None if raw.get("tenants") is None else _strings(raw["tenants"], f"{at}.tenants"),
        weight=float(weight),
    )


def parse_config(raw: Any) -> RouterConfig:
    """The router's config from its adapter_config, or RouterConfigError naming the field.
    Whether the candidates exist (and are not routers) is the registering service's to check."""
    if not isinstance(raw, dict):
        raise RouterConfigError("must be a JSON object", "adapter_config")
    unknown = sorted(set(raw) - _CONFIG_KEYS)
    if unknown:
        raise RouterConfigError(f"unknown field; fields: {', '.join(sorted(_CONFIG_KEYS))}",
                                f"adapter_config.{unknown[0]}")
    listed = raw.get("candidates")
    if not isinstance(listed, list) or not listed:
        raise RouterConfigError("must be a non-empty list of candidate models", "adapter_config.candidates")
    candidates = tuple(_candidate(item, f"adapter_config.candidates.{i}") for i, item in enumerate(listed))
    names = [candidate.model for candidate in candidates]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise RouterConfigError(f"{name!r} is listed twice", f"adapter_config.candidates.{i}.model")
    strategy = raw.get("strategy", "order")
    if strategy not in STRATEGIES:
        raise RouterConfigError(f"must be one of {', '.join(STRATEGIES)}", "adapter_config.strategy")
    bound = raw.get("max_wait_seconds")
    if bound is not None and (
        isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound) or bound < 0
    ):
        raise RouterConfigError("must be a number of seconds >= 0", "adapter_config.max_wait_seconds")
    return RouterConfig(candidates, strategy, None if bound is None else float(bound))


@dataclass(frozen=True)
class RouteRequest:
    """What the rules look at in a submission."""

    tenant: str  # slug
    metadata: Mapping[str, Any]
    language: str | None  # the detected ISO 639-1 code, None: not detected (or not asked for)


@dataclass(frozen=True)
class CandidateState:
    """What the submission knows of one candidate the tenant may use."""

    prompt_tokens: int  # by the candidate's tokenizer, else the estimate
    wait_seconds: float | None = None  # estimated start; None: unknown; math.inf: nothing serves it now
    cost: Decimal | None = None  # the worst-case price of this task on it; None: no price set


def _matches(rule: CandidateRule, request: RouteRequest, state: CandidateState) -> bool:
    if rule.min_prompt_tokens is not None and state.prompt_tokens < rule.min_prompt_tokens:
        return False
    if rule.max_prompt_tokens is not None and state.prompt_tokens > rule.max_prompt_tokens:
        return False
    if rule.languages is not None and (request.language or "") not in rule.languages:
        return False
    if rule.tenants is not None and request.tenant not in rule.tenants:
        return False
    for tag, accepted in rule.metadata.items():
        value = request.metadata.get(tag)
        if not isinstance(value, str) or value not in accepted:
            return False
    return True


def eligible(config: RouterConfig, request: RouteRequest, states: Mapping[str, CandidateState]) -> list[CandidateRule]:
    """The candidates whose rules hold, in the router's order. A candidate missing from
    ``states`` (the tenant may not use it, or it is disabled) is never eligible."""
    return [
        rule for rule in config.candidates
        if rule.model in states and _matches(rule, request, states[rule.model])
    ]


def route(
    config: RouterConfig,
    request: RouteRequest,
    states: Mapping[str, CandidateState],
    rng: random.Random | None = None,
) -> list[str]:
    """The eligible candidates' names, best first by the strategy (the submission takes the
    first it can place, within the wait bound); empty: no route. Ties keep the router's order.

    ``order``: as listed; ``wait``: lowest estimate first (unknown after known);
    ``price``: lowest worst-case cost first (unpriced after priced); ``weights``: one drawn
    at random in proportion to the weights, then the rest as listed."""
    chosen = eligible(config, request, states)
    if config.strategy == "wait":
        chosen.sort(key=lambda rule: _unknown_last(states[rule.model].wait_seconds))
    elif config.strategy == "price":
        chosen.sort(key=lambda rule: _unknown_last(states[rule.model].cost))
    elif config.strategy == "weights" and chosen:
        picked = (rng or random.Random()).choices(chosen, weights=[rule.weight for rule in chosen])[0]
        chosen.remove(picked)
        chosen.insert(0, picked)
    return [rule.model for rule in chosen]


def _unknown_last(value: float | Decimal | None) -> tuple[bool, float | Decimal]:
    return (value is None, value if value is not None else 0)


def within_wait(config: RouterConfig, names: Sequence[str], states: Mapping[str, CandidateState]) -> list[str]:
    """``names`` (best first) with those estimated to wait longer than the router's bound
    moved to the end, lowest estimate first among them: when every candidate is over the
    bound the task still runs, on the one expected to start soonest. Unknown estimates
    pass the bound (nothing says they are slow)."""
    bound = config.max_wait_seconds
    if bound is None:
        return list(names)

    def over(name: str) -> bool:
        wait = states[name].wait_seconds
        return wait is not None and wait > bound

    fast = [name for name in names if not over(name)]
    slow = sorted((name for name in names if over(name)), key=lambda name: states[name].wait_seconds or 0.0)
    return fast + slow


def task_cost(prompt_tokens: int, completion_tokens: int,
              prompt_price: Decimal | None, completion_price: Decimal | None) -> Decimal | None:
    """What ``prompt_tokens`` and ``completion_tokens`` cost at prices per thousand tokens;
    None when the model has neither price. A missing one of the two counts as free."""
    if prompt_price is None and completion_price is None:
        return None
    return (Decimal(prompt_tokens) * (prompt_price or Decimal(0))
            + Decimal(completion_tokens) * (completion_price or Decimal(0))) / Decimal(1000)
