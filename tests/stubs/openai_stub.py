"""A tiny OpenAI-compatible server for tests: echoes the input word by word, as SSE.

Run it as a real process (``serve_openai_stub`` does):
    python -m uvicorn tests.stubs.openai_stub:app --port N --lifespan off

Endpoints: POST /v1/chat/completions and /v1/completions (streaming only: the
last user message or the prompt comes back one word per event, honouring
max_tokens and stop, with a usage event when stream_options.include_usage);
GET /v1/models; GET /stats (what each remote model name was sent).

The remote model name picks a behaviour. Its part before the first ":" is the
mode; the whole name keys the counters, so a test that appends a unique
suffix ("fail-once-503:3f2a") gets fresh counters of its own:
  anything else     a normal echo
  always-NNN        answers HTTP NNN with an OpenAI-shaped error every time
                    (the message echoes the bearer token, as some APIs do)
  fail-once-NNN     answers HTTP NNN to the first request, then echoes
  slow              waits 0.05 s before each word
  stall             sends the headers, then nothing until the client leaves
  stall-after-N     sends N words, then nothing until the client leaves
  drop-after-N      sends N words, then cuts the connection mid-body
  error-after-N     sends N words, then an in-stream error event
  no-done           sends the words, no finish_reason, no [DONE]
  no-usage          never sends a usage event
  json-only         ignores "stream" and answers one JSON document
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

REPO_ROOT = Path(__file__).resolve().parents[2]
SLOW_DELAY = 0.05
_WORD = re.compile(r"\s*\S+\s*")
_COUNTED = re.compile(r"^(always|fail-once|stall-after|drop-after|error-after)-(\d+)$")


def _new_stats() -> dict[str, Any]:
    return {"requests": 0, "paths": [], "last_body": None, "last_authorization": None,
            "chunks_sent": 0, "disconnected": False}


STATS: dict[str, dict[str, Any]] = defaultdict(_new_stats)


class _CutConnection(Exception):
    """Raised mid-body: uvicorn then drops the connection without ending the response."""


async def app(scope: dict, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/stats":
        await _json(send, 200, STATS)
    elif method == "GET" and path == "/v1/models":
        await _json(send, 200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
    elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
        body = json.loads(await _read_body(receive) or b"{}")
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        await _completion(path, body, headers.get("authorization"), receive, send)
    else:
        await _json(send, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})


async def _completion(path: str, body: dict, authorization: str | None, receive: Receive, send: Send) -> None:
    model = str(body.get("model", ""))
    stats = STATS[model]
    stats["requests"] += 1
    stats["paths"].append(path)
    stats["last_body"] = body
    stats["last_authorization"] = authorization
    mode = model.split(":", 1)[0]
    counted = _COUNTED.match(mode)
    kind, number = (counted.group(1), int(counted.group(2))) if counted else (mode, 0)
    if kind == "stall":
        kind = "stall-after"  # stall: stall-after-0

    if kind == "always" or (kind == "fail-once" and stats["requests"] == 1):
        token = (authorization or "").removeprefix("Bearer ")
        # Retry-After 0: the adapter's retry honours it, and the test stays quick.
        extra = [(b"retry-after", b"0")] if number in (429, 503) else []
        await _json(send, number, {"error": {"message": f"stub refuses ({mode}); key provided: {token}",
                                             "type": "stub_error", "code": number}}, extra)
        return

    chat = path.endswith("/chat/completions")
    source = _last_user_message(body.get("messages") or []) if chat else str(body.get("prompt", ""))
    chunks, finish_reason = _echo(source, int(body.get("max_tokens") or 16), body.get("stop"))
    prompt_words = sum(len(_WORD.findall(str(m.get("content", "")))) for m in body.get("messages") or []) \
        if chat else len(_WORD.findall(source))
    usage = {"prompt_tokens": prompt_words, "completion_tokens": len(chunks),
             "total_tokens": prompt_words + len(chunks)}

    if kind == "json-only":
        message = {"role": "assistant", "content": "".join(chunks)}
        choice = {"index": 0, "finish_reason": finish_reason,
                  **({"message": message} if chat else {"text": "".join(chunks)})}
        await _json(send, 200, {"object": "chat.completion" if chat else "text_completion",
                                "model": model, "choices": [choice], "usage": usage})
        return

    include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and kind != "no-usage"
    disconnected = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(receive, disconnected))
    try:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                (b"cache-control", b"no-cache")]})

        async def event(payload: Any) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(), "more_body": True})

        def chunk(text: str | None, finish: str | None) -> dict:
            if chat:
                delta = {} if text is None else {"content": text}
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish}
            frame = {"id": "stub-1", "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": int(time.time()), "model": model, "choices": [choice]}
            if include_usage:
                frame["usage"] = None  # as OpenAI does on every event before the last
            return frame

        await send({"type": "http.response.body", "body": b": stub stream\n\n", "more_body": True})
        if chat:
            first = chunk(None, None)
            first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
            await event(first)
        for index, text in enumerate(chunks):
            if kind in ("stall-after", "drop-after", "error-after") and index == number:
                break
            if kind == "slow" and await _sleep_unless(disconnected, SLOW_DELAY):
                break
            if disconnected.is_set():
                break
            await event(chunk(text, None))
            stats["chunks_sent"] += 1
        if kind == "stall-after":
            await disconnected.wait()
        elif kind == "drop-after":
            raise _CutConnection(f"{model}: cutting the connection after {number} chunks")
        elif kind == "error-after":
            await event({"error": {"message": "stub engine failed mid-stream", "type": "internal_error"}})
            await event("[DONE]")
        elif not disconnected.is_set() and kind != "no-done":
            await event(chunk(None, finish_reason))
            if include_usage:
                await event({"id": "stub-1", "object": "chat.completion.chunk" if chat else "text_completion",
                             "model": model, "choices": [], "usage": usage})
            await event("[DONE]")
        # Recorded before the last send: once the response is complete, uvicorn
        # reports a disconnect to the watcher whatever the client did.
        stats["disconnected"] = stats["disconnected"] or disconnected.is_set()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()


def _echo(source: str, max_tokens: int, stop: Any) -> tuple[list[str], str]:
    """The words to send and the finish reason, as a model would honour max_tokens and stop."""
    words = _WORD.findall(source)
    text = "".join(words[:max_tokens])
    finish_reason = "length" if len(words) > max_tokens else "stop"
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cuts = [text.find(s) for s in stops if s and s in text]
    if cuts:
        text, finish_reason = text[: min(cuts)], "stop"
    return _WORD.findall(text), finish_reason


def _last_user_message(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _watch_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    disconnected.set()


async def _sleep_unless(disconnected: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``; True at once if the client went away meanwhile."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(disconnected.wait(), seconds)
    return disconnected.is_set()


async def _json(send: Send, status: int, payload: Any, extra_headers: list | None = None) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(extra_headers or [])]})
    await send({"type": "http.response.body", "body": body})


# --- running it from tests ---------------------------------------------------------------


@contextlib.contextmanager
def serve_openai_stub(log_path: Path) -> Iterator[str]:
    """Run the stub in a uvicorn subprocess on a free port; yields its base URL (…/v1).

    Port 0 lets the kernel choose (no race with other tests); uvicorn logs the
    port it got, which is read back from ``log_path``.
    """
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.stubs.openai_stub:app", "--host", "127.0.0.1",
             "--port", "0", "--lifespan", "off", "--log-level", "info"],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        port = _wait_for_port(process, log_path)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_port(process: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the OpenAI stub did not start; its log:\n{log_path.read_text(errors='replace')}")


def stub_stats(base_url: str, model: str) -> dict[str, Any]:
    """What the stub at ``base_url`` recorded for the remote model name ``model``."""
    root = base_url.removesuffix("/v1")
    return _stats_client().get(f"{root}/stats").json().get(model, _new_stats())


@functools.cache
def _stats_client() -> httpx.Client:
    return httpx.Client(timeout=10)  # one client: building each one costs a TLS context load
