"""Schemathesis against the published /api/schema/, inside the suite: every
operation answered with generated (valid and invalid) requests gets no 5xx,
and every response matches what the schema declares for it.

Bounded and repeatable: a fixed number of examples per operation, drawn from
a seed derived from each test (the "ci" Hypothesis profile, tests/conftest.py),
through the real WSGI stack (middleware included), as acme with a key holding
every scope, or as an operator with every permission on /api/v1/ops/.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.security.services import issue_operator_token
from apps.tenants.models import Scope
from apps.tenants.services import issue_api_key
from tests.ops_support import make_operator

EXAMPLES_PER_OPERATION = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


# Loaded once, as a client would: GET /api/schema/ through the WSGI stack
# (the schema view reads no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture(autouse=True)
def _requests_keep_the_test_connection():
    # As Django's test client does: a request's end must not close the test's
    # connection, which holds the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def credentials(acme) -> dict[str, str]:
    key = issue_api_key(acme, name="fuzz", scopes=[scope.value for scope in Scope]).secret
    operator = issue_operator_token(make_operator(), name="fuzz").secret
    return {"tenant": f"Bearer {key}", "operator": f"Bearer {operator}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_or_off_schema(case, credentials):
    who = "operator" if case.path.startswith("/api/v1/ops/") else "tenant"
    case.call_and_validate(headers={"Authorization": credentials[who]}, checks=CHECKS)
