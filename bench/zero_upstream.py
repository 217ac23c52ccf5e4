"""A zero-cost OpenAI-compatible upstream for bench/gateway.py.

    .venv/bin/python -m uvicorn bench.zero_upstream:app --port N --no-access-log --lifespan off

POST /v1/chat/completions and /v1/completions answer at once, with no model
behind them: ``stream: true`` sends the opening event, ``max_tokens`` tokens
(at most TOKENS, default 16; "tok0 tok1 …") and the closing events in one write,
so what a client measures is the protocol and the hops, not generation; a
non-streamed request gets the same text as one JSON document. GET /v1/models
lists one model. Nothing is logged or kept per request (the test stub in
tests/stubs/openai_stub.py records every request, which would cost CPU here).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

TOKENS = int(os.environ.get("ZERO_UPSTREAM_TOKENS", "16"))


async def app(scope: dict, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if scope["method"] == "GET" and path == "/v1/models":
        await _json(send, 200, {"object": "list", "data": [{"id": "zero", "object": "model", "owned_by": "bench"}]})
        return
    if scope["method"] != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
        await _json(send, 404, {"error": {"message": f"no route {path}", "type": "not_found_error"}})
        return
    request = json.loads(body or b"{}")
    chat = path.endswith("/chat/completions")
    count = max(1, min(TOKENS, int(request.get("max_tokens") or request.get("max_completion_tokens") or TOKENS)))
    tokens = [f"tok{i} " for i in range(count)]
    usage = {"prompt_tokens": 8, "completion_tokens": count, "total_tokens": 8 + count}
    head = {"id": "zero-1", "created": int(time.time()), "model": str(request.get("model", "zero"))}
    if not request.get("stream"):
        text = "".join(tokens)
        choice = {"index": 0, "finish_reason": "length" if count == TOKENS else "stop",
                  **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
        await _json(send, 200, {**head, "object": "chat.completion" if chat else "text_completion",
                                "choices": [choice], "usage": usage})
        return
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict], **extra: object) -> bytes:
        return b"data: " + json.dumps({**head, "object": kind, "choices": choices, **extra}).encode() + b"\n\n"

    def choice(text: str | None, finish: str | None, role: bool = False) -> dict:
        if not chat:
            return {"index": 0, "text": text or "", "finish_reason": finish}
        delta: dict[str, str] = {"role": "assistant", "content": ""} if role else ({} if text is None else
                                                                                   {"content": text})
        return {"index": 0, "delta": delta, "finish_reason": finish}

    parts = [event([choice(None, None, role=True)])] if chat else []
    parts += [event([choice(token, None)]) for token in tokens]
    parts.append(event([choice(None, "length")]))
    if (request.get("stream_options") or {}).get("include_usage"):
        parts.append(event([], usage=usage))
    parts.append(b"data: [DONE]\n\n")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": b"".join(parts)})


async def _json(send: Send, status: int, payload: object) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
