"""What every /api/v1 endpoint's OpenAPI description shares (drf-spectacular).

The Contracts fix one error body for every refusal, ``{"error": {"type",
"code", "message", "param"}}``, and headers on every response (X-Request-ID),
on refusals to retry (Retry-After on 429 and 503) and on rate-limited routes
(X-RateLimit-*). They are defined here once; a view names its own success
bodies and the refusals it can make:

    @extend_schema(responses=api_responses({200: TaskDetailSerializer}, 404))

and ``api_responses`` adds the statuses every endpoint can answer (401, 403,
503). ``ContractAutoSchema`` (the project's DEFAULT_SCHEMA_CLASS) adds the
headers every response carries. Response serializers only describe a shape;
the views still build their bodies with the apps' representation functions,
and tests/integration/test_api_schema_responses.py holds the two together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ApiErrorDetailSerializer(serializers.Serializer):
    type = serializers.CharField(
        help_text="the class of refusal, from the status: invalid_request_error, authentication_error, "
        "insufficient_budget, permission_error, not_found_error, conflict_error, rate_limit_error, "
        "service_unavailable, server_error"
    )
    code = serializers.CharField(help_text="machine-readable reason, e.g. task_not_found, insufficient_scope")
    message = serializers.CharField(help_text="for people; not a stable interface")
    param = serializers.CharField(allow_null=True, help_text="the request field or header at fault, or null")


class ApiErrorSerializer(serializers.Serializer):
    """Every refusal, whatever its status (OpenAI's error shape)."""

    error = ApiErrorDetailSerializer()


# What each status means on /api/v1 (the Contracts' table, plus the plumbing's own).
ERROR_MEANINGS: dict[int, str] = {
    400: "Invalid input; `param` names the field at fault.",
    401: "No credentials, or a wrong, revoked or expired key or token.",
    402: "Over the token budget.",
    403: "A scope or role is missing, the tenant is paused, or the priority class is above the plan's cap.",
    404: "Not found; another tenant's object is answered alike.",
    409: "The request conflicts with an earlier one (Idempotency-Key reused with another body) "
    "or with the object's state.",
    413: "The request body is too large.",
    415: "The request body is not JSON (Content-Type: application/json).",
    429: "Over a rate limit or the queue cap; retry after Retry-After seconds.",
    503: "A dependency (database, queue) is down, or nothing can run the model now; retry after Retry-After seconds.",
}

# Every endpoint authenticates (401), authorises (403) and reads the database (503).
SHARED_ERRORS = (401, 403, 503)
# An endpoint that reads a JSON body can also refuse the body itself.
BODY_ERRORS = (400, 413, 415)


def error_response(status: int) -> OpenApiResponse:
    return OpenApiResponse(ApiErrorSerializer, description=ERROR_MEANINGS[status])


def api_responses(success: Mapping[int, Any], *errors: int | Iterable[int]) -> dict[int, Any]:
    """``extend_schema(responses=...)`` for an endpoint: its success bodies, then an
    error response for each status it can refuse with and for SHARED_ERRORS.
    ``errors``: statuses, or tuples of them (BODY_ERRORS)."""
    statuses = set(SHARED_ERRORS)
    for item in errors:
        statuses.update([item] if isinstance(item, int) else item)
    return {**success, **{status: error_response(status) for status in sorted(statuses)}}


def object_kind(name: str) -> serializers.CharField:
    """The constant ``object`` field of a body ("task", "list", …), OpenAI's style.

    A pattern rather than a one-value enum: the schema's enum post-processing
    would make one named enum component per value, colliding on names.
    """
    return serializers.CharField(help_text=f'always "{name}"', validators=[RegexValidator(rf"^{re.escape(name)}$")])


def list_of(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The ``{"object": "list", "data": [item, …]}`` envelope around ``item``."""
    name = item.__name__.removesuffix("Serializer")
    return type(
        f"{name}ListSerializer",
        (serializers.Serializer,),
        {"__doc__": f"A list of {name}.", "object": object_kind("list"), "data": item(many=True)},
    )


def _int_header(name: str, description: str, statuses: list[int], required: bool = False) -> OpenApiParameter:
    return OpenApiParameter(
        name, int, OpenApiParameter.HEADER, response=statuses, required=required, description=description
    )


# The statuses of an admission: accepted, refused for the budget, refused for a rate limit.
RATE_LIMITED_STATUSES = [201, 402, 429]
_RATE_LIMIT_BUCKETS = (("", "requests per minute"), ("-Tokens", "tokens per minute"))

# On the routes that admit tasks; a limit the plan does not set sends no headers.
RATE_LIMIT_HEADERS: list[OpenApiParameter] = [
    _int_header(f"X-RateLimit-{field}{suffix}", f"{meaning} ({bucket})", RATE_LIMITED_STATUSES)
    for suffix, bucket in _RATE_LIMIT_BUCKETS
    for field, meaning in (
        ("Limit", "the plan's limit"),
        ("Remaining", "what is left of it now"),
        ("Reset", "seconds until all of it is back"),
    )
]

# On every response: the caller's sane X-Request-ID echoed, else a new one.
EVERY_RESPONSE_HEADERS: list[OpenApiParameter] = [
    OpenApiParameter(
        "X-Request-ID", str, OpenApiParameter.HEADER,
        description="your id for this request (1-128 of A-Z a-z 0-9 . _ : -), echoed in the response",
    ),
    OpenApiParameter(
        "X-Request-ID", str, OpenApiParameter.HEADER, response=True, required=True,
        description="the request's X-Request-ID when it was sane, else one made for it",
    ),
    _int_header("Retry-After", "seconds to wait before retrying", [429, 503], required=True),
]


class ContractAutoSchema(AutoSchema):
    """The project's schema class: every operation documents the headers every response carries."""

    def get_override_parameters(self) -> list[Any]:
        return [*super().get_override_parameters(), *EVERY_RESPONSE_HEADERS]
