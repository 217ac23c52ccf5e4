"""/ops/: the operations dashboard page and the snapshot it polls. Staff only.

The page is the admin's (its header, its sign-in): anyone else is sent to the
admin's login form. The JSON answers 403 instead of a redirect, so the page's
script can tell an ended session from a network error.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.core.errors import PermissionRefused
from apps.dashboard.snapshot import build_snapshot
from llmagentos.api_errors import error_response

POLL_SECONDS = 5  # how often the page asks for a new snapshot


def _is_operator(request: HttpRequest) -> bool:
    return admin.site.has_permission(request)  # an active staff user, as for every admin page


@require_GET
def ops_page(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Operations dashboard",
        "snapshot": build_snapshot().as_json(),
        "poll_seconds": POLL_SECONDS,
    }
    return render(request, "dashboard/ops.html", context)


@never_cache
@require_GET
def snapshot_json(request: HttpRequest) -> HttpResponse:
    if not _is_operator(request):
        return error_response(
            PermissionRefused("the operations dashboard is for staff: sign in at /admin/login/"), request
        )
    return JsonResponse(build_snapshot().as_json())


# admin_view: the admin's login redirect for anyone but staff, and never cached.
ops_page_view = admin.site.admin_view(ops_page)
