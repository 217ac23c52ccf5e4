"""The OpenAPI schema is generated without a warning or an error, and declares
the API's contract: who may call each operation, and the error body and
headers of every response.

Generated as CI or an operator would, ``manage.py spectacular --validate
--fail-on-warn``, in a process of its own: drf-spectacular's warnings are
counted per process, so an in-process run would depend on what ran before.
"""

from __future__ import annotations

import json

import pytest
import yaml
from django.test import Client

from tests.integration.manage_cli import base_env, describe, manage

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ERROR_BODY = {"$ref": "#/components/schemas/ApiError"}


def test_the_schema_generates_with_no_warning_and_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    result = manage(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(out), env=base_env(tmp_path / "data")
    )
    assert result.returncode == 0, describe(result)
    # Warnings are printed to stderr even without --fail-on-warn; there must be none.
    assert "Warning" not in result.stderr and "Error" not in result.stderr, describe(result)
    schema = yaml.safe_load(out.read_text())
    assert "/api/v1/tasks" in schema["paths"]


@pytest.fixture(scope="module")
def schema() -> dict:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield f"{method.upper()} {path}", path, operation


def test_operator_routes_advertise_only_operator_tokens_and_the_rest_only_api_keys(schema):
    assert set(schema["components"]["securitySchemes"]) == {"ApiKey", "OperatorToken"}
    advertised = {name: operation.get("security") for name, _, operation in _operations(schema)}
    expected = {
        name: [{"OperatorToken": []}] if path.startswith("/api/v1/ops/") else [{"ApiKey": []}]
        for name, path, _ in _operations(schema)
    }
    assert advertised == expected


def test_every_operation_describes_its_bodies_errors_and_headers(schema):
    problems = []
    for name, _, operation in _operations(schema):
        responses = operation["responses"]
        for status in ("401", "403", "503"):  # every route authenticates and reads the database
            if status not in responses:
                problems.append(f"{name}: no {status}")
        for status, response in responses.items():
            body = response.get("content", {}).get("application/json", {}).get("schema")
            headers = response.get("headers", {})
            if not headers.get("X-Request-ID", {}).get("required"):
                problems.append(f"{name} {status}: X-Request-ID not declared")
            if int(status) >= 400 and body != ERROR_BODY:
                problems.append(f"{name} {status}: the body is not the error shape: {body}")
            if int(status) < 300 and status != "204" and "$ref" not in (body or {}):
                problems.append(f"{name} {status}: the body is not a described shape: {body}")
            if status in ("429", "503") and not headers.get("Retry-After", {}).get("required"):
                problems.append(f"{name} {status}: Retry-After not declared")
    assert not problems, "\n".join(problems)
