"""Granting a model to a tenant and withdrawing it are audited, one event per tenant:
through the operator API (POST/PATCH /api/v1/ops/models) and in the admin."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.catalog.models import LLMModel
from apps.security.services import issue_operator_token
from tests.audit_support import OPERATOR_ADDRESS, assert_by_operator, events, signed_in_operator
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/ops/models"


def _grants() -> list[tuple[str, str, str]]:
    return [(event.action, event.tenant_slug, event.target) for event in events("model_granted", "model_revoked")]


def test_grants_changed_through_the_ops_api(acme, globex):
    user = make_operator("catalog-ops")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {issue_operator_token(user).secret}", REMOTE_ADDR=OPERATOR_ADDRESS)

    created = api.post(MODELS, {"name": "echo-private", "adapter": "echo", "tenants": ["acme"]},
                       content_type="application/json")
    assert created.status_code == 201, created.content
    changed = api.patch(f"{MODELS}/echo-private", {"tenants": ["globex"]}, content_type="application/json")
    assert changed.status_code == 200, changed.content
    api.patch(f"{MODELS}/echo-private", {"tenants": ["globex"], "description": "same grants"},
              content_type="application/json")

    assert _grants() == [
        ("model_granted", "acme", "model echo-private"),
        ("model_granted", "globex", "model echo-private"),
        ("model_revoked", "acme", "model echo-private"),
    ]
    granted_acme, granted_globex, revoked_acme = events("model_granted", "model_revoked")
    assert_by_operator(granted_acme, user, acme)
    assert_by_operator(granted_globex, user, globex)
    assert_by_operator(revoked_acme, user, acme)


def test_grants_changed_in_the_admin(acme, globex):
    client, user = signed_in_operator()
    model = LLMModel.objects.create(name="private", adapter="echo")
    model.allowed_tenants.set([acme])
    form = {
        "name": model.name, "description": "", "adapter": "echo", "adapter_config": "{}", "enabled": "on",
        "current_version": "", "allowed_tenants": [globex.pk],
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000",
    }

    saved = client.post(f"/admin/catalog/llmmodel/{model.pk}/change/", form)

    assert saved.status_code == 302, saved.content.decode()[:3000]
    assert _grants() == [("model_granted", "globex", "model private"), ("model_revoked", "acme", "model private")]
    granted, revoked = events("model_granted", "model_revoked")
    assert_by_operator(granted, user, globex)
    assert_by_operator(revoked, user, acme)
