"""Model prices: operators set a price per thousand prompt and completion tokens on a
model (the operator API, add_model); the usage report shows each row's cost beside its
tokens — tokens ÷ 1,000 × price, summed, to the millionth — for the model that ran (a
routed task's candidate), null where the model has no price; a routed model with the
``price`` strategy picks the cheapest candidate for the request."""

from __future__ import annotations

import json
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from apps.runtime.execution import execute_task
from apps.security.services import issue_operator_token
from tests.conftest import ApiClient
from tests.ops_support import make_operator
from tests.routing_support import make_router, submit

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/ops/models"
REPORT = "/api/v1/usage/report"


@pytest.fixture
def operator(db) -> ApiClient:
    return ApiClient(issue_operator_token(make_operator(), name="tests").secret)


def _run(api, model: str, prompt: str) -> dict:
    created = submit(api, model, prompt)
    execute_task(uuid.UUID(created["id"]))
    return created


def test_prices_set_through_the_api_give_the_documented_cost(operator, acme_api):
    created = operator.post(MODELS, {"name": "echo-paid", "adapter": "echo", "is_public": True,
                                     "price_prompt_per_1k": "0.5", "price_completion_per_1k": "1.5"})
    assert created.status == 201, created.body
    assert (created.body["price_prompt_per_1k"], created.body["price_completion_per_1k"]) == ("0.500000", "1.500000")
    _run(acme_api, "echo-paid", "one two three")  # 3 prompt + 3 completion tokens (echo)
    _run(acme_api, "echo-paid", "four five six seven")  # 4 + 4
    _run(acme_api, "echo", "free words")  # no price

    report = acme_api.get(REPORT).body

    rows = {row["model"]: row for row in report["rows"]}
    # (7 × 0.5 + 7 × 1.5) / 1000 = 0.014
    assert (rows["echo-paid"]["prompt_tokens"], rows["echo-paid"]["cost"]) == (7, "0.014000")
    assert rows["echo"]["cost"] is None
    assert report["totals"]["cost"] == "0.014000"
    csv = acme_api.get(REPORT, {"format": "csv"}).body.decode()
    assert ",echo-paid,2,7,7,0.014000\r\n" in csv


def test_a_price_change_through_the_api_and_add_model_prices(operator):
    out = StringIO()
    call_command("add_model", "echo-cli", "--adapter", "echo", "--price-prompt", "0.25", stdout=out)
    assert json.loads(out.getvalue())["price_prompt_per_1k"] == "0.250000"

    changed = operator.patch(f"{MODELS}/echo-cli", {"price_completion_per_1k": "2"})
    assert changed.status == 200, changed.body
    assert (changed.body["price_prompt_per_1k"], changed.body["price_completion_per_1k"]) == ("0.250000", "2.000000")
    refused = operator.patch(f"{MODELS}/echo-cli", {"price_prompt_per_1k": "-1"})
    assert (refused.status, refused.body["error"]["param"]) == (400, "price_prompt_per_1k"), refused.body


def test_a_routed_task_is_charged_at_the_candidates_price(operator, acme_api):
    for name, price in (("echo-dear", "9"), ("echo-cheap", "1")):
        assert operator.post(MODELS, {"name": name, "adapter": "echo", "is_public": True,
                                      "price_prompt_per_1k": price, "price_completion_per_1k": price}).status == 201
    operator.post(MODELS, {"name": "echo-unpriced", "adapter": "echo", "is_public": True})
    make_router("thrifty", {"candidates": ["echo-unpriced", "echo-dear", "echo-cheap"], "strategy": "price"})

    created = _run(acme_api, "thrifty", "one two")

    assert created["routed_to"] == "echo-cheap"
    rows = acme_api.get(REPORT).body["rows"]
    assert [(row["model"], row["cost"]) for row in rows] == [("echo-cheap", "0.004000")]  # (2 + 2) × 1 / 1000
