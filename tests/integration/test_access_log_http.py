"""One access line per HTTP request, through the real ASGI application
(llmagentos.access_log): method, path with its ids, status, duration, tenant and
request id; never the API key or the query string."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.integration.log_support import asgi_request, captured_log

# The ASGI application reads the database from other threads: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_request_gets_one_line_with_what_was_asked_and_answered(acme_api, acme_key):
    task_id = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "hi"}).body["id"]
    path = f"/api/v1/tasks/{task_id}"

    with captured_log("json") as log:
        answer = asgi_request(
            "GET", path, {"Authorization": f"Bearer {acme_key}", "X-Request-ID": "req-access-1"},
            query=b"token=query-secret-123",
        )

    assert answer.status == 200, answer.body
    [line] = log.access_lines()
    assert line["duration_ms"] >= 0
    assert {name: line[name] for name in ("kind", "method", "path", "status", "tenant", "request_id")} == {
        "kind": "http", "method": "GET", "path": path, "status": 200, "tenant": "acme", "request_id": "req-access-1",
    }
    assert line["message"].startswith(f"GET {path} 200 ")
    assert acme_key not in log.text() and "query-secret-123" not in log.text()


def test_a_refusal_before_django_is_logged_with_the_request_id_it_answered(acme_key):
    with override_settings(MAX_REQUEST_BODY_BYTES=100), captured_log("json") as log:
        answer = asgi_request(
            "POST", "/api/v1/tasks",
            {"Authorization": f"Bearer {acme_key}", "Content-Length": "500", "X-Request-ID": "req-access-2"},
            body=b"x" * 500,
        )

    assert answer.status == 413 and answer.headers["x-request-id"] == "req-access-2"
    [line] = log.access_lines()
    assert (line["status"], line["request_id"], line["tenant"]) == (413, "req-access-2", None)


def test_an_unauthenticated_request_names_no_tenant(globex):
    with captured_log("json") as log:
        answer = asgi_request("GET", "/api/v1/tasks", {"Authorization": "Bearer not-a-real-key"})

    assert answer.status == 401
    [line] = log.access_lines()
    assert (line["status"], line["tenant"]) == (401, None)
    assert "not-a-real-key" not in log.text()
