"""Submitting to a routed model: which of its candidates the task runs on.

The choice is apps.catalog.routing's (pure); this module gathers its inputs
for one submission — the candidates the tenant may use, each one's count of
the prompt's tokens, the detected language, wait estimates (the scheduler's,
through ``lifecycle.estimate_model_wait``) and prices — then takes the best
candidate that can be placed. It runs before admission, so quotas, the
budget reservation and the charge are the chosen model's.

Fallbacks at submission: a candidate whose version no worker can hold (503
``model_unplaceable`` for a plain model) is passed over for the next; one
whose wait estimate exceeds the router's ``max_wait_seconds`` goes after
those within it. At run time, once a task's attempts on a candidate have all
failed transiently, ``next_candidate`` picks where it goes on
(apps.tasks.services.fall_back; docs/scheduling.md).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.catalog import routing
from apps.catalog.language import detect_language, prompt_text
from apps.catalog.models import LLMModel
from apps.catalog.prompt_tokens import count_prompt_tokens, estimate_prompt_tokens
from apps.catalog.services import ModelTarget, candidates_for_tenant, refuse_unplaceable
from apps.core.errors import InvalidInput, Unavailable
from apps.tasks import lifecycle
from apps.tenants.models import Tenant

if TYPE_CHECKING:
    from apps.tasks.services import TaskRequest


class NoRoute(InvalidInput):
    """No candidate of a routed model may run this request (400 ``no_route``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="no_route", param="model")


@dataclass(frozen=True)
class Routed:
    target: ModelTarget  # the candidate that runs the task
    prompt_tokens: int | None  # its adapter's count of the prompt (None: it cannot count)


def route_submission(tenant: Tenant, router: LLMModel, request: TaskRequest) -> Routed:
    """The candidate of ``router`` that runs ``request``: NoRoute when none is eligible,
    Unavailable (the first candidate's) when every eligible one is unplaceable."""
    order, models, counted = _ranked(tenant, router, request)
    if not order:
        raise NoRoute(f"no model behind {router.name!r} takes this request (its length, language or metadata)")
    return _first_placeable(order, models, counted)


def next_candidate(tenant: Tenant, router: LLMModel, request: TaskRequest, tried: Collection[str]) -> Routed | None:
    """The candidate a routed task falls back to once its attempts on one failed
    transiently: the best one left by the same rules and strategy as at submission,
    ``tried`` (the models it ran on) and those the tenant may not use left out, the
    unplaceable passed over; None when none is left."""
    try:
        order, models, counted = _ranked(tenant, router, request)
    except NoRoute:  # the router's config was broken since: nothing to fall back to
        return None
    left = [name for name in order if name not in tried]
    if not left:
        return None
    try:
        return _first_placeable(left, models, counted)
    except Unavailable:
        return None


def _ranked(
    tenant: Tenant, router: LLMModel, request: TaskRequest
) -> tuple[list[str], dict[str, LLMModel], dict[str, int | None]]:
    """The eligible candidates' names, best first (within the wait bound first); the
    tenant's usable candidates by name; each one's own count of the prompt's tokens."""
    try:
        config = routing.parse_config(router.adapter_config)
    except routing.RouterConfigError as exc:  # registration validates; an edit in the database may not
        raise NoRoute(f"model {router.name!r} is misconfigured ({exc.param}: {exc}); the operators are told") \
            from None
    models = candidates_for_tenant(tenant, [candidate.model for candidate in config.candidates])
    counted: dict[str, int | None] = {}
    states: dict[str, routing.CandidateState] = {}
    for name, model in models.items():
        counted[name] = count_prompt_tokens(model, model.current_version, request.prompt, request.messages)
        tokens = counted[name]
        if tokens is None:
            tokens = estimate_prompt_tokens(request.prompt, request.messages)
        states[name] = routing.CandidateState(
            prompt_tokens=tokens,
            wait_seconds=lifecycle.estimate_model_wait(model) if config.uses_wait else None,
            cost=routing.task_cost(tokens, request.max_tokens, model.price_prompt_per_1k,
                                   model.price_completion_per_1k),
        )
    language = detect_language(prompt_text(request.prompt, request.messages)) if config.uses_language else None
    asked = routing.RouteRequest(tenant=tenant.slug, metadata=request.metadata, language=language)
    return routing.within_wait(config, routing.route(config, asked, states), states), models, counted


def _first_placeable(order: list[str], models: dict[str, LLMModel], counted: dict[str, int | None]) -> Routed:
    """The first of ``order`` some worker can hold; Unavailable (the first one's) when none."""
    refused: Unavailable | None = None
    for name in order:
        model = models[name]
        target = ModelTarget(model, model.current_version)
        if target.version is not None:
            lifecycle.placing(target.version)  # a verdict for a version no run has judged yet
        try:
            refuse_unplaceable(target)
        except Unavailable as exc:
            refused = refused or exc
            continue
        return Routed(target, counted[name])
    assert refused is not None
    raise refused
