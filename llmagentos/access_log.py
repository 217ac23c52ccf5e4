"""The access log: one line per HTTP request and one per WebSocket session.

An ASGI middleware, outermost in llmagentos.asgi (the ASGI server runs
without an access log of its own: apps.runtime.serve). Not a Django
middleware, because a Django middleware sees neither the WebSocket sessions
(Channels) nor the refusals made before Django (llmagentos.body_limit's
413), and it returns before a streamed body (/v1's server-sent events) has
been sent, so its duration would stop at the headers.

It also binds the request id (X-Request-ID when sane, else a new one) for the
whole exchange, so every line logged while serving it carries the id
(apps.core.logs), and adds the header to an answer that lacks it.

What a line holds: for HTTP the method, the path (ids included, never the
query string, which may hold a token), the status, the duration in ms and the
tenant slug; for a WebSocket session the path, whether the handshake was
accepted, the close code, the duration, the messages sent and the tenant. The
tenant is noted where the API key or stream token is checked
(apps.core.logs.note_tenant). Never a header, a key or a body.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from apps.core import logs
from llmagentos.body_limit import ASGIApp, Message, Receive, Scope, Send
from llmagentos.middleware import accepted_request_id

logger = logging.getLogger("llmagentos.access")

# The close code of a session that ended without one being sent or received:
# 1006, "abnormal closure", as RFC 6455 names it.
NO_CLOSE_CODE = 1006


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(_header(scope, b"x-request-id"))
        with logs.bound(request_id=request_id), logs.tracking_caller() as caller:
            if scope["type"] == "http":
                await self._http(scope, receive, send, request_id, caller)
            else:
                await self._websocket(scope, receive, send, caller)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str, caller: logs.Caller) -> None:
        started = time.perf_counter()
        status = 0  # none sent: the client left first, or the application failed

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            method, path = scope.get("method", ""), _printable(scope.get("path", ""))
            logger.info(
                "%s %s %s %.1fms tenant=%s", method, path, status or "-", duration_ms, caller.tenant or "-",
                extra={"fields": {"kind": "http", "method": method, "path": path, "status": status or None,
                                  "duration_ms": duration_ms, "tenant": caller.tenant or None}},
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, caller: logs.Caller) -> None:
        started = time.perf_counter()
        accepted = False
        close_code: int | None = None
        sent = 0

        async def watched_receive() -> Message:
            nonlocal close_code
            message = await receive()
            if message["type"] == "websocket.disconnect" and close_code is None:
                close_code = message.get("code", NO_CLOSE_CODE)  # the client closed first
            return message

        async def watched_send(message: Message) -> None:
            nonlocal accepted, close_code, sent
            kind = message["type"]
            if kind == "websocket.accept":
                accepted = True
            elif kind == "websocket.send":
                sent += 1
            elif kind == "websocket.close" and close_code is None:
                close_code = message.get("code", 1000)  # the server closed first
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            path = _printable(scope.get("path", ""))
            code = close_code if close_code is not None else NO_CLOSE_CODE
            logger.info(
                "WS %s %s close=%s %.1fms sent=%d tenant=%s", path, "accepted" if accepted else "refused",
                code, duration_ms, sent, caller.tenant or "-",
                extra={"fields": {"kind": "websocket", "path": path, "accepted": accepted, "close_code": code,
                                  "duration_ms": duration_ms, "messages_sent": sent,
                                  "tenant": caller.tenant or None}},
            )


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _printable(path: Any) -> str:
    """The path as one line: a decoded path may hold a newline, which would forge a line."""
    text = str(path)
    return text if text.isprintable() else json.dumps(text)[1:-1]
