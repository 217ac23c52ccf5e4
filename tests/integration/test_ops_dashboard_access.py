"""The operations dashboard (/ops/) is for staff only.

Anyone else is sent to the admin's login form (the page) or refused with 403
in the Contracts' error shape (the JSON it polls); staff see both, and the
admin's index links to the dashboard.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

PAGE = "/ops/"
SNAPSHOT = "/ops/snapshot.json"


@pytest.fixture
def anonymous_client(db) -> Client:
    return Client()


@pytest.fixture
def member_client(db) -> Client:
    """A signed-in user who is not staff (a tenant's member, say)."""
    client = Client()
    client.force_login(get_user_model().objects.create_user("member", password=None))
    return client


@pytest.fixture
def former_operator_client(db) -> Client:
    """Staff, but the account was deactivated."""
    client = Client()
    user = get_user_model().objects.create_user("former", password=None, is_staff=True)
    client.force_login(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    return client


def test_anonymous_visitors_are_sent_to_the_admin_login(anonymous_client):
    response = anonymous_client.get(PAGE)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={PAGE}"


@pytest.mark.parametrize("who", ["member_client", "former_operator_client"])
def test_signed_in_non_staff_get_the_admin_login_not_the_dashboard(request, who):
    response = request.getfixturevalue(who).get(PAGE, follow=True)

    assert response.redirect_chain[-1][0].startswith("/admin/login/")
    assert response.status_code == 200
    assert b'id="ops"' not in response.content


@pytest.mark.parametrize("who", ["anonymous_client", "member_client", "former_operator_client"])
def test_the_snapshot_is_refused_to_anyone_but_staff(request, who):
    client = request.getfixturevalue(who)

    response = client.get(SNAPSHOT)

    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "permission_denied"
    assert "models" not in body


def test_staff_see_the_dashboard_and_its_snapshot(staff_client):
    page = staff_client.get(PAGE)

    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="ops"' in html
    assert 'id="ops-snapshot"' in html  # the first snapshot travels with the page
    # Chart.js and the page's script from the project's own static files, not a CDN.
    assert "/static/dashboard/vendor/chart.umd.min.js" in html and "/static/dashboard/ops.js" in html
    assert "cdn" not in html.lower()
    assert 'id="site-name"' in html and 'id="user-tools"' in html  # inside the admin's frame

    snapshot = staff_client.get(SNAPSHOT)
    assert snapshot.status_code == 200
    assert snapshot["Content-Type"] == "application/json"
    assert {"models", "throughput", "workers", "tenants", "failures"} <= set(snapshot.json())
    assert "no-cache" in snapshot["Cache-Control"]


def test_the_admin_index_links_to_the_dashboard(staff_client):
    index = staff_client.get("/admin/")

    assert index.status_code == 200
    assert f'href="{PAGE}"' in index.content.decode()
