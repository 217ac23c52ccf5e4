"""The ASGI front of /v1's completions: answered without Django's request cycle.

A completion is the platform's hottest request (issue 8: the gateway's CPU per
request is the platform's budget), and most of what Django's request cycle
does for it is spent on nothing it needs: the URL resolver, a dozen
middleware (sessions, CSRF, messages, the admin's login lockout), the
``request_started``/``request_finished`` signals, and a new thread with a new
database connection for every request (asgiref's ThreadSensitiveContext).
This ASGI application sits in front of Django (llmagentos.asgi) and answers
``POST /v1/chat/completions`` and ``POST /v1/completions`` itself; every
other request, those routes' other methods included, goes on to Django.

It is only a transport: the answer is built by the same code as the Django
views' (apps.gateway.views.complete: authentication, translation, the task's
submission, the stream), so both paths answer alike. What it does in place of
Django's cycle, each as Django does it:

- reads the body (the size limit is llmagentos.body_limit's, outside this);
- runs the submission in the event loop's long-lived threads
  (apps.core.aio.in_pooled_thread), which keep their database connections;
- hands on to Django what Django's middleware would answer itself: a Host
  outside ALLOWED_HOSTS (400) and, where SECURE_SSL_REDIRECT is set, a plain
  HTTP request (the redirect to HTTPS: an API key is never taken over HTTP);
- watches for the client's disconnect while it answers, and then cancels the
  answer (the views cancel the task of a client that left) and closes the
  response (a streamed one cancels its task there);
- adds the headers by Django's own SecurityMiddleware and
  XFrameOptionsMiddleware rules (HSTS, nosniff, referrer and opener
  policies, frame options: as the settings say) and counts the request in
  llmagentos_http_requests_total under its route's name.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware

from apps.core import metrics
from apps.core.aio import in_pooled_thread
from apps.gateway.requests import CHAT, COMPLETION
from apps.gateway.views import complete
from llmagentos.api_errors import error_response

Scope = dict[str, Any]
Message = dict[str, Any]

# Path → (the kind of completion, the route's name as Django's URL resolver names it).
ROUTES = {
    "/v1/chat/completions": (CHAT, "v1/chat/completions"),
    "/v1/completions": (COMPLETION, "v1/completions"),
}


class ClientLeft(Exception):
    """The client disconnected."""


class GatewayFront:
    def __init__(self, app: Any) -> None:
        self.app = app  # Django's ASGI application: everything else
        # Django's own rules for what a response carries and when a request is
        # redirected to HTTPS, read from the settings as Django's chain reads them
        # (once, at start); only their process_request/process_response are called.
        self._security = SecurityMiddleware(_not_a_view)
        self._frame_options = XFrameOptionsMiddleware(_not_a_view)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        route = ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its request was whole
        request = ASGIRequest(scope, io.BytesIO(body))
        if self._django_answers(request):
            await self.app(scope, _replaying(body, receive), send)
            return
        kind, route_name = route
        answering = asyncio.create_task(self._answer(request, kind, route_name, send))
        watching = asyncio.create_task(_until_disconnect(receive))
        await asyncio.wait((answering, watching), return_when=asyncio.FIRST_COMPLETED)
        for task in (watching, answering):
            if not task.done():
                task.cancel()  # the answer's code cancels the task of a client that left
            with suppress(asyncio.CancelledError, ClientLeft):
                await task

    def _django_answers(self, request: ASGIRequest) -> bool:
        """Whether Django's middleware would answer this request itself: a Host it
        refuses (DisallowedHost, 400) or an HTTP request to redirect to HTTPS."""
        try:
            request.get_host()
        except DisallowedHost:
            return True
        return self._security.process_request(request) is not None

    async def _answer(self, request: ASGIRequest, kind: str, route_name: str, send: Any) -> None:
        """Build the answer, send it, close it. A client that leaves during the
        submission or a whole completion cancels this task there, and the views
        cancel the task it made; one that leaves while a stream is sent cuts the
        sending short, and closing the response cancels its task (it is closed
        whatever ends the sending)."""
        try:
            response: HttpResponseBase = await complete(request, kind, in_pooled_thread)
        except Exception as exc:  # as Django's handler would: a 500 (or 503) in the Contracts' shape, logged
            response = error_response(exc, request)
        metrics.http_requests.labels(route=route_name, method="POST", status=str(response.status_code)).inc()
        # Any response, streamed ones too, as in Django's chain (their stubs say HttpResponse).
        self._security.process_response(request, cast(HttpResponse, response))
        self._frame_options.process_response(request, cast(HttpResponse, response))
        try:
            with suppress(asyncio.CancelledError):
                await _send(response, send)
        finally:
            # A streamed response cancels its task here when it was cut off (views._TaskEventStream).
            await sync_to_async(response.close, thread_sensitive=False)()


def _not_a_view(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("the front calls these middleware's hooks only, never a view through them")


def _replaying(body: bytes, receive: Any) -> Any:
    """``receive`` with the body already read given back first (for Django, which reads it again)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _read_body(receive: Any) -> bytes | None:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _until_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientLeft


async def _send(response: HttpResponseBase, send: Any) -> None:
    headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]
    if isinstance(response, HttpResponse):
        # As Django's CommonMiddleware: a length, rather than a chunked body.
        headers.append((b"Content-Length", str(len(response.content)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    if isinstance(response, StreamingHttpResponse):
        # Django's __aiter__ is an async generator (its stubs say iterator): closed when cut short.
        async with aclosing(cast(AsyncGenerator[bytes, None], aiter(response))) as parts:
            async for part in parts:
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif isinstance(response, HttpResponse):
        await send({"type": "http.response.body", "body": response.content})
