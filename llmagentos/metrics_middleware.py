"""Counting HTTP requests into llmagentos_http_requests_total (apps.core.metrics).

Async- and sync-capable like every middleware here (llmagentos.middleware
says why). Labels are the URL *route* (the pattern, ``api/v1/tasks/<id:pk>``),
never the path, so ids do not multiply the series; a request no route matched
counts as ``unmatched``, a static file as ``static``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from apps.core import metrics

GetResponse = Callable[[HttpRequest], Any]

# Anything else (a scanner's made-up verb) counts as "other": labels stay bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetricsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        return _counted(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        return _counted(request, await self.get_response(request))


def _counted(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    method = request.method if request.method in KNOWN_METHODS else "other"
    metrics.http_requests.labels(route=route_of(request), method=method, status=str(response.status_code)).inc()
    return response


def route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return match.route
    if settings.STATIC_URL and request.path_info.startswith(settings.STATIC_URL):
        return "static"
    return "unmatched"
