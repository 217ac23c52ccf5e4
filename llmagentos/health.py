"""Liveness and readiness probes (no auth: load balancers call them)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "queue": _queue_ok()}
    ready = all(checks.values())
    response = JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
    if not ready:
        response["Retry-After"] = "5"
    return response


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0] == 1
    except Exception as exc:  # any failure means "not ready", never a 500
        logger.warning("readiness: database unreachable: %s", exc)
        return False


def _queue_ok() -> bool:
    try:
        # A read on Huey's own storage: Redis PING-equivalent or an SQLite query.
        # The per-model task queues (apps.scheduler.queues) live in this same
        # storage (same SQLite file, same Redis pool), so this covers them too.
        settings.HUEY.pending_count()
        return True
    except Exception as exc:
        logger.warning("readiness: queue unreachable: %s", exc)
        return False
