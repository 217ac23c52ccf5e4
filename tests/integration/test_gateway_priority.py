"""OpenAI's ``service_tier`` and the ``X-Priority`` header pick the task's
priority class, within the plan's cap (403 priority_not_allowed above it,
naming what asked for it)."""

from __future__ import annotations

import pytest

from apps.tasks.models import Task
from apps.tenants.services import change_tenant_plan
from tests.integration.gateway_support import CHAT, COMPLETIONS, submit_streamed

pytestmark = pytest.mark.django_db

BODY = {"model": "echo", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


def _class_of(key: str, path: str = CHAT, body: dict = BODY, **headers: str) -> str:
    return Task.objects.get(pk=submit_streamed(key, path, body, **headers)).priority


@pytest.mark.parametrize(
    ("tier", "priority_class"),
    [("priority", "interactive"), ("flex", "batch"), ("default", "normal"), ("auto", "normal"), (None, "normal")],
)
def test_service_tier_picks_the_class(acme_key, tier, priority_class):
    body = {**BODY, "service_tier": tier}

    assert _class_of(acme_key, body=body) == priority_class


def test_the_x_priority_header_picks_the_class(acme_key):
    assert _class_of(acme_key, **{"X-Priority": "batch"}) == "batch"
    assert _class_of(acme_key, COMPLETIONS, {"model": "echo", "prompt": "hi"}, **{"X-Priority": "interactive"}) == (
        "interactive"
    )
    # "default" and "auto" ask for nothing in particular: the header decides.
    assert _class_of(acme_key, body={**BODY, "service_tier": "auto"}, **{"X-Priority": "batch"}) == "batch"
    assert _class_of(acme_key, body={**BODY, "service_tier": "flex"}, **{"X-Priority": "batch"}) == "batch"


def test_a_header_that_is_no_class_or_contradicts_the_tier_is_refused(acme_api):
    unknown = acme_api.post(CHAT, BODY, **{"X-Priority": "urgent"})
    contradicting = acme_api.post(CHAT, {**BODY, "service_tier": "priority"}, **{"X-Priority": "batch"})

    for refused, code in ((unknown, "invalid_value"), (contradicting, "conflicting_parameters")):
        assert refused.status == 400, refused.body
        assert (refused.body["error"]["param"], refused.body["error"]["code"]) == ("X-Priority", code)
    assert Task.objects.count() == 0


def test_a_class_above_the_plans_cap_is_403_naming_what_asked_for_it(acme, acme_api, acme_key):
    change_tenant_plan(acme, {"max_priority": "normal"})

    by_tier = acme_api.post(CHAT, {**BODY, "service_tier": "priority"})
    by_header = acme_api.post(CHAT, BODY, **{"X-Priority": "interactive"})

    for refused, param in ((by_tier, "service_tier"), (by_header, "X-Priority")):
        assert refused.status == 403, refused.body
        error = refused.body["error"]
        assert (error["type"], error["code"], error["param"]) == ("permission_error", "priority_not_allowed", param)
    assert Task.objects.count() == 0
    # At and below the cap: accepted.
    assert _class_of(acme_key, body={**BODY, "service_tier": "default"}) == "normal"
    assert _class_of(acme_key, body={**BODY, "service_tier": "flex"}) == "batch"
