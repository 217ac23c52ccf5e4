"""An id in a URL that cannot name anything is answered 404, never 500.

Every route under /api/v1 and /v1 that takes an id or a name in its path:
a segment that is no UUID (36 characters, or holding a NUL, which
PostgreSQL refuses outright) matches no route (apps.core.converters), so the
answer is the Contracts' 404, as for an unknown id, before any query runs.
"""

from __future__ import annotations

import uuid

import pytest

from apps.security.services import issue_operator_token
from tests.conftest import ApiClient
from tests.ops_support import make_operator

MALFORMED = [
    "-" * 36,
    "g" * 36,
    "0" * 35 + "\x00",
    "12345678-1234-1234-1234-12345678901g",
    "%00" * 12,
    "urn:uuid:12345678-1234-1234-1234-123",
]
# A name may be most text, but never a control character.
MALFORMED_NAMES = ["\x00" * 36, "echo%00", "ech\x1fo"]

TENANT_ROUTES = [
    ("get", "/api/v1/tasks/{}"),
    ("delete", "/api/v1/tasks/{}"),
    ("post", "/api/v1/tasks/{}/cancel"),
    ("post", "/api/v1/tasks/{}/stream-token"),
    ("get", "/api/v1/workflows/{}"),
    ("post", "/api/v1/workflows/{}/cancel"),
]
OPERATOR_ROUTES = [
    ("post", "/api/v1/ops/workers/{}/drain"),
    ("post", "/api/v1/ops/workers/{}/undrain"),
]


@pytest.fixture
def operator(db) -> ApiClient:
    return ApiClient(issue_operator_token(make_operator(), name="tests").secret)


def _assert_not_found(response, what: str) -> None:
    assert response.status == 404, (what, response.status, response.body)
    error = response.body["error"]
    assert error["type"] == "not_found_error", (what, response.body)
    assert set(error) == {"type", "code", "message", "param"}, (what, response.body)


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_malformed_id_is_not_found_on_every_tenant_route(acme_api, bad):
    for method, route in TENANT_ROUTES:
        _assert_not_found(getattr(acme_api, method)(route.format(bad)), f"{method.upper()} {route} {bad!r}")


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_malformed_id_is_not_found_on_every_operator_route(operator, bad):
    for method, route in OPERATOR_ROUTES:
        _assert_not_found(getattr(operator, method)(route.format(bad)), f"{method.upper()} {route} {bad!r}")


@pytest.mark.parametrize("bad", MALFORMED_NAMES)
def test_a_model_name_with_control_characters_is_not_found(acme_api, operator, bad):
    _assert_not_found(acme_api.get(f"/v1/models/{bad}"), f"GET /v1/models/{bad!r}")
    _assert_not_found(
        operator.patch(f"/api/v1/ops/models/{bad}", {"description": "x"}), f"PATCH /api/v1/ops/models/{bad!r}"
    )


def test_well_formed_ids_in_either_letter_case_still_reach_the_view(acme_api):
    """The counterpart: the converter lets every UUID through (the view then says task_not_found)."""
    unknown = uuid.uuid4()
    for written in (str(unknown), str(unknown).upper()):
        response = acme_api.get(f"/api/v1/tasks/{written}")
        assert response.status == 404, response.body
        assert response.body["error"]["code"] == "task_not_found", response.body
