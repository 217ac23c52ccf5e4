"""Counting HTTP requests into llmagentos_http_requests_total (apps.core.metrics).

Async- and sync-capable like every middleware here (llmagentos.middleware
says why). Labels are the URL *route* (the pattern, ``api/v1/tasks/<id:pk>``),
never the path, so ids do not multiply the series; a request no route matched
counts as ``unmatched``, a static file as ``static``.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from apps.core import metrics
from apps.core.middleware import HybridMiddleware

# Anything else (a scanner's made-up verb) counts as "other": labels stay bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetricsMiddleware(HybridMiddleware):
    def _call(self, request: HttpRequest) -> HttpResponseBase:
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
