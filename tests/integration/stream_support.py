"""Open a task's stream as a client does, through the project's real ASGI application
(Channels' WebsocketCommunicator): routing, the handshake's auth, the consumer, the
hub and the stream log, all in this process.

The consumer reads the database from other threads, so tests using these helpers
need committed rows: ``pytest.mark.django_db(transaction=True, serialized_rollback=True)``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from channels.testing import WebsocketCommunicator

from llmagentos.asgi import application

# A guard against a hung test, not a measurement: a stream silent for this long has failed.
SILENCE_LIMIT_SECONDS = 30.0

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def on_stream_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on this process's one long-lived event loop and wait for its result.

    One loop for every stream, as in a server process: the per-loop parts (the hub,
    the Redis stream log's clients and notice listener) are made once and live on.
    A loop per call (asyncio.run) would close them each time, and closing a loop
    can wait for the Redis notice listener to go idle (up to 10 s: a cancellation
    that lands as its read times out is lost), which tests nothing more.
    """
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="stream-test-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coroutine, _loop).result()


@dataclass(frozen=True)
class Handshake:
    accepted: bool
    # Refused: the close code the server sent before accepting (Channels answers the
    # handshake with HTTP 403 then). Accepted: the subprotocol the server chose.
    detail: int | str | None


def _communicator(
    task_id: uuid.UUID | str, *, key: str | None = None, stream_token: str | None = None, after: int | None = None
) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    # What a browser sends: the protocol name and the token, as two subprotocols.
    subprotocols = ["llmagentos", f"token.{stream_token}"] if stream_token else None
    query = f"?after={after}" if after is not None else ""
    path = f"/ws/tasks/{task_id}/{query}"
    return WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)


def handshake(task_id: uuid.UUID | str, *, key: str | None = None, stream_token: str | None = None) -> Handshake:
    """Open the task's stream and close it again; what the handshake answered."""

    async def attempt() -> Handshake:
        communicator = _communicator(task_id, key=key, stream_token=stream_token)
        accepted, detail = await communicator.connect(timeout=SILENCE_LIMIT_SECONDS)
        # Accepted or refused, the client goes and the server finishes the session,
        # as an ASGI server tells the application (its access line is written then).
        await communicator.disconnect(timeout=SILENCE_LIMIT_SECONDS)
        return Handshake(accepted, detail)

    return on_stream_loop(attempt())


def opened(
    task_id: uuid.UUID | str, *, key: str | None = None, stream_token: str | None = None
) -> tuple[WebsocketCommunicator, Handshake]:
    """Open the task's stream and leave it open (``closed`` closes it)."""

    async def attempt() -> tuple[WebsocketCommunicator, Handshake]:
        communicator = _communicator(task_id, key=key, stream_token=stream_token)
        accepted, detail = await communicator.connect(timeout=SILENCE_LIMIT_SECONDS)
        return communicator, Handshake(accepted, detail)

    return on_stream_loop(attempt())


def closed(communicator: WebsocketCommunicator) -> None:
    """The client closes the stream; returns once the server has finished with it."""
    on_stream_loop(communicator.disconnect(timeout=SILENCE_LIMIT_SECONDS))


def until_closed(communicator: WebsocketCommunicator) -> tuple[list[dict[str, Any]], int]:
    """The messages the server sends up to its close, and the close code."""

    async def read() -> tuple[list[dict[str, Any]], int]:
        messages: list[dict[str, Any]] = []
        while True:
            output = await communicator.receive_output(timeout=SILENCE_LIMIT_SECONDS)
            if output["type"] == "websocket.close":
                return messages, output.get("code", 1000)
            messages.append(json.loads(output["text"]))

    return on_stream_loop(read())


def read_to_end(
    task_id: uuid.UUID | str, *, key: str | None = None, stream_token: str | None = None, after: int | None = None
) -> list[dict[str, Any]]:
    """Every message of the stream of an ended task, up to the server's normal close."""

    async def read() -> list[dict[str, Any]]:
        communicator = _communicator(task_id, key=key, stream_token=stream_token, after=after)
        accepted, detail = await communicator.connect(timeout=SILENCE_LIMIT_SECONDS)
        assert accepted, f"the stream was refused (close code {detail})"
        messages: list[dict[str, Any]] = []
        try:
            while True:
                output = await communicator.receive_output(timeout=SILENCE_LIMIT_SECONDS)
                if output["type"] == "websocket.close":
                    assert output.get("code", 1000) == 1000, output
                    return messages
                messages.append(json.loads(output["text"]))
        finally:
            await communicator.disconnect(timeout=SILENCE_LIMIT_SECONDS)

    return on_stream_loop(read())


def chunks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message for message in messages if message["type"] == "chunk"]
