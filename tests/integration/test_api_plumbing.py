"""Request ids, probes, the schema and docs, and what a database failure looks like.

The database failure is injected with Django's own ``connection.execute_wrapper``
(the documented hook around every query the driver runs): the edge of the
outside world, not our code.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.staticfiles import finders
from django.db import OperationalError, connection
from django.test import Client

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
GENERATED_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(response) -> str:
    value = response.headers.get("X-Request-ID")
    assert value, f"no X-Request-ID on a {response.status} response: {response.headers}"
    assert GENERATED_ID.match(value), value
    return value


def _assert_error_shape(body, type_):
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"type", "code", "message", "param"}, body
    assert body["error"]["type"] == type_, body


# --- X-Request-ID ---------------------------------------------------------------------------------


def test_every_api_response_carries_a_request_id(acme_api, outsider_api):
    responses = {
        "201": acme_api.post(TASKS, {"model": "echo", "prompt": "hi"}),
        "200": acme_api.get(TASKS),
        "400": acme_api.post(TASKS, {"model": "echo"}),
        "401": outsider_api.get(TASKS),
        "404 task": acme_api.get(f"{TASKS}/{uuid.uuid4()}"),
        "404 path": acme_api.get("/api/v1/no-such-thing"),
        "404 path, no key": outsider_api.get("/api/v1/no-such-thing"),
    }
    assert {name: r.status for name, r in responses.items()} == {
        "201": 201, "200": 200, "400": 400, "401": 401, "404 task": 404, "404 path": 404, "404 path, no key": 404,
    }
    ids = [_request_id(r) for r in responses.values()]
    assert len(set(ids)) == len(ids)  # minted per request


def test_unknown_api_path_is_json_in_the_error_shape(outsider_api, acme_api):
    for api in (outsider_api, acme_api):
        for path in ("/api/v1/no-such-thing", "/api/v1/tasks/not-a-uuid", "/api/v2/tasks", "/api/v1/tasks/"):
            response = api.get(path)
            assert response.status == 404, (path, response.body)
            assert response.headers["Content-Type"].startswith("application/json"), path
            _assert_error_shape(response.body, "not_found_error")
            assert response.body["error"]["param"] is None


def test_probes_and_docs_carry_a_request_id():
    client = Client()
    for path in ("/healthz", "/readyz", "/api/schema/", "/api/docs/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert GENERATED_ID.match(response.headers.get("X-Request-ID", "")), path


@pytest.mark.parametrize("incoming", ["abc-123", "req.42:retry_1", str(uuid.uuid4()), "x" * 128])
def test_a_sane_request_id_is_echoed(acme_api, outsider_api, incoming):
    assert acme_api.get(TASKS, **{"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming
    assert acme_api.post(TASKS, {}, **{"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming
    assert outsider_api.get(TASKS, **{"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["x" * 300, "x" * 129, "has spaces in it", "semi;colon", "quote\"d", "new\tline", "<script>", "ü-ünicode"],
    ids=["300-chars", "129-chars", "spaces", "semicolon", "quote", "tab", "html", "non-ascii"],
)
def test_an_insane_request_id_is_replaced(acme_api, outsider_api, incoming):
    for response in (acme_api.get(TASKS, **{"X-Request-ID": incoming}),
                     outsider_api.get(TASKS, **{"X-Request-ID": incoming})):
        replaced = _request_id(response)
        assert replaced != incoming
        assert incoming not in replaced


def test_an_empty_request_id_is_replaced(acme_api):
    assert _request_id(acme_api.get(TASKS, **{"X-Request-ID": ""}))


# --- probes ------------------------------------------------------------------------------------------


def test_healthz():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database_and_the_queue():
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": True, "queue": True}


def test_probes_need_no_key():
    # A bogus key must not turn a load balancer's probe into a 401.
    client = Client(HTTP_AUTHORIZATION="Bearer nonsense")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


# --- schema and docs ---------------------------------------------------------------------------------


def test_schema_is_served_and_lists_the_task_routes():
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    text = response.content.decode()
    for route in ("/api/v1/tasks", "/api/v1/tasks/{id}", "/api/v1/tasks/{id}/cancel", "/api/v1/models"):
        assert route in text, route


def test_swagger_ui_is_served_from_the_sidecar_without_a_cdn():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "swagger-ui" in html.lower()

    external = re.findall(r"""(?:src|href)\s*=\s*["'](https?:)?//[^"']*""", html, flags=re.I)
    assert external == [], external
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com", "//cdn."):
        assert cdn not in html, cdn

    # The assets it names are local static files that ship with the sidecar.
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*swagger-ui[^"']*\.(?:js|css))["']""", html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    assert any(a.endswith(".css") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a shipped static file"


# --- dependency failure ---------------------------------------------------------------------------------


def _database_down(execute, sql, params, many, context):
    raise OperationalError("connection to the database was lost (injected)")


def test_database_failure_is_503_with_retry_after(acme_api):
    with connection.execute_wrapper(_database_down):
        responses = [
            acme_api.get(TASKS),
            acme_api.post(TASKS, {"model": "echo", "prompt": "hi"}),
            acme_api.get(f"{TASKS}/{uuid.uuid4()}"),
        ]
    for response in responses:
        assert response.status == 503, response.body
        _assert_error_shape(response.body, "service_unavailable")
        assert response.body["error"]["code"] == "dependency_unavailable"
        assert "injected" not in response.body["error"]["message"]  # no internals leak
        retry_after = response.headers.get("Retry-After")
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) > 0
        _request_id(response)
    # And all is well once it is back.
    assert acme_api.get(TASKS).status == 200


def test_readyz_reports_a_database_failure_as_503(acme):
    with connection.execute_wrapper(_database_down):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] is False
    assert response.json()["status"] == "unavailable"
    assert response["Retry-After"].isdigit()
    assert Client().get("/readyz").status_code == 200
