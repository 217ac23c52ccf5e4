"""The answer to a password login while its username and address are locked out
(django-axes calls ``lockout_response``; settings.AXES_LOCKOUT_CALLABLE)."""

from __future__ import annotations

import math

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def lockout_response(request: HttpRequest, *_: object) -> HttpResponse:
    """429 with Retry-After and a page that says how long to wait.

    The rest of axes' arguments (the original response, the credentials) are
    not needed, and axes 8.3.1's async middleware passes them in another order.
    """
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    # The lock lasts a full cool-off from this refusal on: a try while locked
    # out starts it again (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT).
    context = {**admin.site.each_context(request), "minutes": math.ceil(seconds / 60)}
    response = render(request, "admin/login_locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response
