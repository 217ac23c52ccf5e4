"""Registering a routed model (the operator API, add_model --router): the router's config
is validated at registration and a refusal is a 400 naming the field under adapter_config
(an unknown candidate, a router as a candidate — so no cycle can form —, a bad rule or
strategy); nothing is recorded then. A valid one is listed with its config."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.catalog.models import LLMModel
from apps.security.services import issue_operator_token
from tests.conftest import ApiClient
from tests.ops_support import make_operator
from tests.routing_support import LENGTH_AND_LANGUAGE, echo_copies, make_router

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/ops/models"


@pytest.fixture
def operator(db) -> ApiClient:
    return ApiClient(issue_operator_token(make_operator(), name="tests").secret)


@pytest.fixture
def copies(db) -> None:
    echo_copies("echo-short", "echo-long", "echo-zh")


def test_a_router_registers_through_the_api(operator, copies):
    created = operator.post(MODELS, {"name": "translator", "adapter": "router", "adapter_config": LENGTH_AND_LANGUAGE,
                                     "is_public": True})

    assert created.status == 201, created.body
    assert (created.body["adapter"], created.body["adapter_config"]) == ("router", LENGTH_AND_LANGUAGE)
    assert LLMModel.objects.get(name="translator").is_router


@pytest.mark.parametrize(
    ("config", "param"),
    [
        ({"candidates": ["echo-short", "nobody"]}, "adapter_config.candidates.1.model"),
        ({"candidates": []}, "adapter_config.candidates"),
        ({"candidates": [{"model": "echo-short", "max_prompt_tokens": -1}]},
         "adapter_config.candidates.0.max_prompt_tokens"),
        ({"candidates": [{"model": "echo-short", "min_prompt_tokens": 9, "max_prompt_tokens": 3}]},
         "adapter_config.candidates.0.min_prompt_tokens"),
        ({"candidates": [{"model": "echo-short", "languages": []}]}, "adapter_config.candidates.0.languages"),
        ({"candidates": [{"model": "echo-short", "colour": "red"}]}, "adapter_config.candidates.0.colour"),
        ({"candidates": [{"model": "echo-short", "weight": 0}]}, "adapter_config.candidates.0.weight"),
        ({"candidates": ["echo-short", "echo-short"]}, "adapter_config.candidates.1.model"),
        ({"candidates": ["echo-short"], "strategy": "fastest"}, "adapter_config.strategy"),
        ({"candidates": ["echo-short"], "max_wait_seconds": -5}, "adapter_config.max_wait_seconds"),
        ({"candidates": ["echo-short"], "fallback": True}, "adapter_config.fallback"),
        ({"candidates": ["translator"]}, "adapter_config.candidates.0.model"),  # itself
    ],
)
def test_a_bad_router_config_is_a_400_naming_the_field(operator, copies, config, param):
    refused = operator.post(MODELS, {"name": "translator", "adapter": "router", "adapter_config": config})

    assert (refused.status, refused.body["error"]["param"]) == (400, param), refused.body
    assert not LLMModel.objects.filter(name="translator").exists()


def test_a_router_cannot_route_to_a_router(operator, copies):
    make_router("inner", {"candidates": ["echo-short"]})

    refused = operator.post(MODELS, {"name": "outer", "adapter": "router",
                                     "adapter_config": {"candidates": ["echo-long", "inner"]}})

    assert (refused.status, refused.body["error"]["param"]) == (400, "adapter_config.candidates.1.model")
    assert "router" in refused.body["error"]["message"]
    # Nor may a candidate become a router: the router naming it would route to a router.
    changed = operator.patch(f"{MODELS}/echo-short", {"adapter": "router",
                                                      "adapter_config": {"candidates": ["echo-long"]}})
    assert (changed.status, changed.body["error"]["param"]) == (400, "adapter"), changed.body
    assert LLMModel.objects.get(name="echo-short").adapter == "echo"


def test_add_model_router(copies):
    out = StringIO()
    call_command("add_model", "translator", "--router", json.dumps(LENGTH_AND_LANGUAGE), "--public", stdout=out)

    shown = json.loads(out.getvalue())
    assert (shown["name"], shown["adapter"], shown["adapter_config"]) == ("translator", "router", LENGTH_AND_LANGUAGE)

    with pytest.raises(CommandError, match="no model named 'ghost'"):
        call_command("add_model", "other", "--router", '{"candidates": ["ghost"]}', stdout=StringIO())
    assert not LLMModel.objects.filter(name="other").exists()
    with pytest.raises(CommandError):  # --adapter or --router, not both
        call_command("add_model", "both", "--adapter", "echo", "--router", "{}", stdout=StringIO())
