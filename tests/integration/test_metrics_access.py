"""Who may read GET /metrics: a scraper with METRICS_TOKEN or a staff session; others 401."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.metrics_support import parse

pytestmark = pytest.mark.django_db

TOKEN = "metrics-scrape-token-for-tests"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


def _refused(response) -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "not_authenticated")
    assert b"llmagentos_" not in response.content


def test_the_metrics_token_reads_the_series():
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "llmagentos_queue_depth" in parse(response.content.decode()).families


def test_a_staff_session_reads_the_series(staff_client):
    assert staff_client.get("/metrics").status_code == 200


def test_anyone_else_gets_401(acme_key):
    _refused(Client().get("/metrics"))
    _refused(Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}))
    _refused(Client().get("/metrics", headers={"Authorization": f"Bearer {acme_key}"}))  # a tenant's key
    member = Client()
    member.force_login(get_user_model().objects.create_user("member", password="pw-for-tests"))
    _refused(member.get("/metrics"))  # signed in, not staff


def test_a_wrong_token_is_refused_even_with_a_staff_session(staff_client):
    _refused(staff_client.get("/metrics", headers={"Authorization": "Bearer wrong"}))


def test_without_a_configured_token_no_token_is_accepted(settings, staff_client):
    settings.METRICS_TOKEN = ""
    _refused(Client().get("/metrics", headers={"Authorization": "Bearer "}))
    _refused(Client().get("/metrics", headers={"Authorization": "Bearer anything"}))
    assert staff_client.get("/metrics").status_code == 200
