"""Granting models to tenants from the admin's model list: the action asks
which tenants on a page of its own, then opens the models to them (keeping
their other grants), each grant in the audit log; choosing none grants nothing."""

from __future__ import annotations

import pytest

from apps.catalog.models import LLMModel
from apps.tenants.services import create_tenant
from tests.audit_support import assert_by_operator, events, signed_in_operator

pytestmark = pytest.mark.django_db

MODELS = "/admin/catalog/llmmodel/"


def test_the_grant_action_asks_for_the_tenants_then_grants(acme, globex, acme_api, globex_api):
    initech = create_tenant("Initech", "initech")
    private = LLMModel.objects.create(name="private", adapter="echo")
    private.allowed_tenants.add(initech)
    client, user = signed_in_operator()
    selected = {"action": "grant_to_tenants", "_selected_action": [str(private.pk)]}

    page = client.post(MODELS, selected)

    assert page.status_code == 200
    text = page.content.decode()
    assert "Grant models to tenants" in text and "private" in text
    assert all(f'value="{tenant.pk}"' in text for tenant in (acme, globex, initech))
    assert acme_api.post("/api/v1/tasks", {"model": "private", "prompt": "hi"}).status == 400  # not yet

    nothing = client.post(MODELS, {**selected, "apply": "Grant"})
    assert nothing.status_code == 200 and "This field is required." in nothing.content.decode()

    granted = client.post(MODELS, {**selected, "apply": "Grant", "tenants": [str(acme.pk), str(initech.pk)]},
                          follow=True)

    assert [str(m) for m in granted.context["messages"]] == ["private granted to: acme."]
    assert set(private.allowed_tenants.values_list("slug", flat=True)) == {"acme", "initech"}
    assert acme_api.post("/api/v1/tasks", {"model": "private", "prompt": "hi"}).status == 201
    assert globex_api.post("/api/v1/tasks", {"model": "private", "prompt": "hi"}).status == 400
    (event,) = events("model_granted")
    assert event.target == "model private"
    assert_by_operator(event, user, acme)
