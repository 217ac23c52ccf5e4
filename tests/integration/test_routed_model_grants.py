"""A routed model a tenant may use grants nothing on its candidates: one the tenant may
not use (private and not granted, or disabled) is never chosen, whatever the router's
order or strategy; with none left the submission is 400 ``no_route``."""

from __future__ import annotations

import pytest

from apps.catalog import services as catalog
from tests.routing_support import TASKS, echo_copies, make_router, submit

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("strategy", ["order", "price", "weights", "wait"])
def test_a_candidate_the_tenant_may_not_use_is_never_chosen(acme, globex, acme_api, globex_api, strategy):
    echo_copies("echo-globex", public=False, tenants=("globex",))
    echo_copies("echo-open")
    make_router("shared", {"candidates": [{"model": "echo-globex", "weight": 1000}, "echo-open"],
                           "strategy": strategy})

    for _ in range(5):
        assert submit(acme_api, "shared", "hello")["routed_to"] == "echo-open"
    assert submit(globex_api, "shared", "hello", metadata={})["routed_to"] in {"echo-globex", "echo-open"}


def test_only_forbidden_candidates_is_no_route(acme, acme_api):
    private = echo_copies("echo-private", public=False)[0]
    echo_copies("echo-off")
    catalog.update_model(catalog.resolve_model_for_tenant(acme, "echo-off"), {"enabled": False})
    make_router("closed", {"candidates": [private.name, "echo-off"]})

    refused = acme_api.post(TASKS, {"model": "closed", "prompt": "hello"})

    assert refused.status == 400, refused.body
    assert refused.body["error"]["code"] == "no_route"
