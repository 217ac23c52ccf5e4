"""Request bodies over ``settings.MAX_REQUEST_BODY_BYTES`` are refused before they are read.

Django's ASGI handler reads a request's whole body (spooling it to disk)
before any middleware or view runs, authentication included: a client
without credentials could make every server process take in hundreds of
megabytes before being told 401. This ASGI middleware, in front of Django
(llmagentos.asgi), answers 413 in the Contracts' error shape:

- at once, from the headers alone, when Content-Length says more than the limit;
- when a body sent without a length (chunked) goes past the limit: Django is
  told the client left (it then answers nothing) and the rest is never read.

``DATA_UPLOAD_MAX_MEMORY_SIZE`` is the same number, so Django's own check
(a RequestDataTooBig, also 413 through llmagentos.api_errors) agrees.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings

from apps.core import logs
from llmagentos.api_errors import error_body

# The shapes Django's ASGIHandler takes.
Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOO_LARGE = 413


class RequestBodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.MAX_REQUEST_BODY_BYTES
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return

        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django stops reading at a disconnect and answers nothing;
                    # the refusal is sent below, and the rest never read.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, watched_send)
        if over and not started:
            await _refuse(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        error_body(TOO_LARGE, "request_too_large", f"the request body is larger than {limit} bytes")
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": TOO_LARGE,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The refusal comes before Django's middleware, which would add it
                # (the access log, outside, has bound one).
                (b"x-request-id", (logs.current("request_id") or uuid.uuid4().hex).encode()),
                # The unread rest of the body leaves the connection unusable.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
