"""Pausing and resuming tenants from the admin's tenant list: the paused
tenant's next submission is refused, the other's is not; resuming lets it
submit again; each change is in the audit log, by the operator."""

from __future__ import annotations

import pytest

from apps.tenants.models import Tenant
from tests.audit_support import assert_by_operator, events, signed_in_operator

pytestmark = pytest.mark.django_db

TENANTS = "/admin/tenants/tenant/"
SUBMISSION = {"model": "echo", "prompt": "hello"}


def _act(client, action: str, *tenants: Tenant):
    return client.post(
        TENANTS, {"action": action, "_selected_action": [str(t.pk) for t in tenants]}, follow=True
    )


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_an_operator_pauses_and_resumes_a_tenant(acme, globex, acme_api, globex_api):
    client, user = signed_in_operator()

    paused = _act(client, "pause_tenants", acme)

    assert "Paused: acme." in _messages(paused)
    assert not Tenant.objects.get(pk=acme.pk).active and Tenant.objects.get(pk=globex.pk).active
    refused = acme_api.post("/api/v1/tasks", SUBMISSION)
    assert (refused.status, refused.body["error"]["code"]) == (403, "tenant_paused")
    assert globex_api.post("/api/v1/tasks", SUBMISSION).status == 201

    again = _act(client, "pause_tenants", acme, globex)  # acme is paused already
    assert _messages(again) == ["Paused: globex.", "1 tenant(s) already paused: left as they were."]

    resumed = _act(client, "resume_tenants", acme)

    assert "Resumed: acme." in _messages(resumed)
    assert acme_api.post("/api/v1/tasks", SUBMISSION).status == 201
    (pause_acme, pause_globex), (resume_acme,) = events("tenant_paused"), events("tenant_resumed")
    for event, tenant in ((pause_acme, acme), (pause_globex, globex), (resume_acme, acme)):
        assert_by_operator(event, user, tenant)
