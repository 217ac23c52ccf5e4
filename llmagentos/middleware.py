"""Request-wide plumbing: request ids and static files, both async-capable.

Every middleware in settings.MIDDLEWARE must run natively under ASGI: one
sync-only middleware makes Django run the whole chain in a thread and call
the async views (/v1) back on the loop through async_to_sync. That costs two
thread hops per request, and a client's disconnect then cancels the thread's
wrapper, not the view: the view's cancellation handling (cancel the task of
a client that left) races with a thread that waits for it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware

from apps.core import logs
from apps.core.middleware import GetResponse, HybridMiddleware

_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware(HybridMiddleware):
    """Echo the caller's X-Request-ID when it is sane, else mint one, and bind it
    (apps.core.logs) so every line logged for the request carries it.

    Under the ASGI server llmagentos.access_log has bound it already, for the
    whole exchange (its access line included): this takes that one. Without
    it (the test client, WSGI), this binds its own for the request."""

    def _call(self, request: HttpRequest) -> HttpResponseBase:
        request_id = _request_id_of(request)
        with logs.bound(request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        request_id = _request_id_of(request)
        with logs.bound(request_id=request_id):
            response = await self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


def accepted_request_id(incoming: str) -> str:
    """The caller's request id when it is sane (it goes into logs and headers), else a new one."""
    return incoming if _ACCEPTABLE_REQUEST_ID.match(incoming) else uuid.uuid4().hex


def _request_id_of(request: HttpRequest) -> str:
    return logs.current("request_id") or accepted_request_id(request.headers.get("X-Request-ID", ""))


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise (the admin's and the dashboard's static files), async-capable.

    WhiteNoise 6's middleware is sync-only. Finding a file is a dictionary
    lookup (or a stat under autorefresh) and serving it builds a response
    whose body is read as it is sent, so neither needs a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        super().__init__(get_response)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = self.find_file(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)
