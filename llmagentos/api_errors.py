"""Errors in the Contracts' shape, for every API route.

``{"error": {"type", "code", "message", "param"}}`` with the status codes of
../shared/ARCHITECTURE.md. Services raise typed domain errors (``apps.core.errors``), views and
serializers DRF's own; this module is the one place that turns them into
responses: status codes, error codes and headers (Retry-After, X-RateLimit-*).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core import errors
from apps.tenants.ratelimit import RateLimits

logger = logging.getLogger(__name__)

RETRY_AFTER_UNAVAILABLE_SECONDS = 5

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_budget",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


# Each kind of domain error and its status; the most specific class wins
# (the first match in this order).
_STATUS_BY_KIND: tuple[tuple[type[errors.DomainError], int], ...] = (
    (errors.InvalidInput, 400),
    (errors.OverBudget, 402),
    (errors.PermissionRefused, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
)


# The OpenAI-compatible API (apps.gateway): where OpenAI's own statuses differ
# from /api/v1's, routes under this prefix answer as OpenAI does.
OPENAI_PREFIX = "/v1/"


def status_of(exc: errors.DomainError, path: str = "") -> int:
    """The status for ``exc`` on the route at ``path``."""
    if isinstance(exc, errors.UnknownModel) and path.startswith(OPENAI_PREFIX):
        return 404  # OpenAI: 404 model_not_found; /api/v1 keeps 400 (param "model")
    for kind, status in _STATUS_BY_KIND:
        if isinstance(exc, kind):
            return status
    return 500


def headers_of(exc: errors.DomainError) -> dict[str, str]:
    """Retry-After and X-RateLimit-* for the refusals that carry them."""
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after_seconds", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    headers.update(rate_limit_headers(getattr(exc, "rate_limits", None)))
    return headers


def rate_limit_headers(limits: RateLimits | None) -> dict[str, str]:
    """X-RateLimit-Limit/-Remaining/-Reset for requests per minute (the Contracts'
    names), and the same with a -Tokens suffix for tokens per minute. Reset is
    in seconds from now. A limit the plan does not set gets no headers."""
    if limits is None:
        return {}
    headers: dict[str, str] = {}
    for suffix, bucket in (("", limits.requests), ("-Tokens", limits.tokens)):
        if bucket.limit is None:
            continue
        headers[f"X-RateLimit-Limit{suffix}"] = str(bucket.limit)
        headers[f"X-RateLimit-Remaining{suffix}"] = str(bucket.remaining)
        headers[f"X-RateLimit-Reset{suffix}"] = str(bucket.reset_seconds)
    return headers


def domain_error_response(exc: errors.DomainError, path: str = "") -> Response:
    status = status_of(exc, path)
    response = Response(error_body(status, exc.code, exc.message, exc.param), status=status)
    for name, value in headers_of(exc).items():
        response[name] = value
    return response


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "type": _TYPE_BY_STATUS.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "code": code,
            "message": message,
            "param": param,
        }
    }


def _first_validation_error(detail: Any, path: str = "") -> tuple[str | None, str, str]:
    """(param, code, message) of the first error in DRF's nested error detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            key = str(key)
            if key == "non_field_errors":
                child = path
            else:
                child = f"{path}.{key}" if path else key
            return _first_validation_error(value, child)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                child = f"{path}.{index}" if path else str(index)
                return _first_validation_error(value, child)
            if isinstance(value, exceptions.ErrorDetail):
                return path or None, value.code or "invalid", str(value)
    if isinstance(detail, exceptions.ErrorDetail):
        return path or None, detail.code or "invalid", str(detail)
    return path or None, "invalid", str(detail)


def _validation_error_response(exc: exceptions.ValidationError) -> Response:
    param, code, message = _first_validation_error(exc.detail)
    if param and not message.startswith(param):
        message = f"{param}: {message}"
    return Response(error_body(400, code, message, param), status=400)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, errors.DomainError):
        return domain_error_response(exc, getattr(context.get("request"), "path", ""))
    if isinstance(exc, exceptions.ValidationError):
        return _validation_error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body(413, "request_too_large", "the request body is too large"), status=413)
    down = errors.unavailable_dependency(exc)
    if down is not None:
        logger.warning("%s unavailable: %s", down, exc)
        # Names the dependency, never the error's text (hosts, ports, SQL).
        unavailable = Response(
            error_body(503, "dependency_unavailable", f"the {down} is unavailable; retry later"), status=503
        )
        unavailable["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE_SECONDS)
        return unavailable
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        if isinstance(exc, DatabaseError):
            logger.exception("database error")
        else:
            logger.exception("unhandled error in %s", context.get("view"))
        return Response(error_body(500, "internal_error", "internal server error"), status=500)

    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail
        codes = exc.get_codes()
        if isinstance(codes, str):
            code = codes
        message = str(detail) if not isinstance(detail, (list, dict)) else str(exc.default_detail)
    else:
        message = str(exc)
    response.data = error_body(response.status_code, code, message)
    return response


def error_response(exc: Exception, request: HttpRequest) -> JsonResponse:
    """What ``exception_handler`` answers, as a plain Django response: for the
    views outside DRF (the OpenAI-compatible /v1 views of apps.gateway, async)."""
    answer = exception_handler(exc, {"request": request, "view": None})
    assert answer is not None  # exception_handler answers every exception
    response = JsonResponse(answer.data, status=answer.status_code)
    for name, value in answer.items():
        if name.lower() != "content-type":
            response[name] = value
    if answer.status_code == 401:
        # What DRF's views add to a 401 (APIView.handle_exception), for the same clients.
        response["WWW-Authenticate"] = "Bearer"
    return response


def _is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path.startswith("/v1/")


def not_found_view(request: HttpRequest, exception: Exception | None = None):  # noqa: ARG001
    """handler404: JSON in the contract shape on API paths, Django's page elsewhere."""
    if _is_api_path(request.path):
        return JsonResponse(error_body(404, "not_found", "not found"), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error_view(request: HttpRequest):
    if _is_api_path(request.path):
        return JsonResponse(error_body(500, "internal_error", "internal server error"), status=500)
    from django.views.defaults import server_error

    return server_error(request)


def bad_request_view(request: HttpRequest, exception: Exception):  # Django always passes the exception
    if _is_api_path(request.path):
        return JsonResponse(error_body(400, "bad_request", "the request could not be read"), status=400)
    from django.views.defaults import bad_request

    return bad_request(request, exception)
