"""GET /metrics: the platform's Prometheus series, in the text exposition format.

What it writes: the counters and histograms every process keeps
(apps.core.metrics), summed over this host's processes in multi-process mode,
and the gauges read from the database at this scrape (apps.scheduler.metrics).

Who may read it: the output reveals usage (tokens by tenant, task counts), so
a scraper sends ``Authorization: Bearer <METRICS_TOKEN>``, or an operator
opens it in a browser signed in to the admin as a staff user. Anyone else
gets 401 in the Contracts' error shape (``not_authenticated``), with
``WWW-Authenticate: Bearer``, like the API's own 401s.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from apps.core import metrics
from apps.core.secrets import bearer
from apps.scheduler.metrics import DatabaseGauges
from llmagentos.api_errors import error_body


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _may_read(request):
        response = JsonResponse(
            error_body(401, "not_authenticated", "send Authorization: Bearer <METRICS_TOKEN>, or sign in as staff"),
            status=401,
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


def _may_read(request: HttpRequest) -> bool:
    credential = bearer(request.headers.get("Authorization"))
    if credential is not None:
        # A token that is sent must be the right one: no falling back to the session.
        return bool(settings.METRICS_TOKEN) and hmac.compare_digest(
            credential.encode(), settings.METRICS_TOKEN.encode()
        )
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def _registry() -> CollectorRegistry:
    """A registry for this scrape: the counted series, then the database's gauges."""
    registry = CollectorRegistry()
    directory = metrics.multiprocess_dir()
    if directory is not None:
        # Every process's files in the directory, summed (live ones only for livesum gauges).
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(REGISTRY)  # a registry is a collector: this process's own values
    registry.register(DatabaseGauges())
    return registry
