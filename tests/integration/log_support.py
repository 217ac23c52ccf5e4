"""The platform's log lines as its handler writes them (settings.LOGGING: the
context filter and a formatter of apps.core.logs), captured in this process;
and a plain HTTP request through the real ASGI application, whose access log
and request id binding are outside Django (llmagentos.access_log).

Tests using ``asgi_request`` need committed rows (``transaction=True``): the
application reads the database from other threads."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from apps.core.logs import ContextFilter, JsonFormatter, TextFormatter
from tests.integration.gateway_support import asgi_communicator, http_scope
from tests.integration.stream_support import SILENCE_LIMIT_SECONDS, on_stream_loop


class CapturedLog:
    def __init__(self, buffer: io.StringIO) -> None:
        self._buffer = buffer

    def text(self) -> str:
        return self._buffer.getvalue()

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def records(self) -> list[dict[str, Any]]:
        """Each line, parsed (JSON form): a line that is not one JSON object fails here."""
        return [json.loads(line) for line in self.lines()]

    def access_lines(self) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["logger"] == "llmagentos.access"]


@contextmanager
def captured_log(form: str = "json") -> Iterator[CapturedLog]:
    """Every line logged inside (INFO and up, any logger), as LOG_FORMAT=``form`` writes it."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield CapturedLog(buffer)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def asgi_request(
    method: str, path: str, headers: dict[str, str], *, body: bytes = b"", query: bytes = b""
) -> Answer:
    """One HTTP request through ``llmagentos.asgi.application`` (the access log, the
    body limit, Django), read to its end; returns once the application has finished."""
    if body and not any(name.lower() == "content-length" for name in headers):
        headers = {**headers, "Content-Length": str(len(body))}  # Django reads no more than it says
    scope = {**http_scope(path, headers, method=method), "query_string": query}
    communicator = asgi_communicator(scope)
    on_stream_loop(communicator.send_input({"type": "http.request", "body": body}))
    start = on_stream_loop(communicator.receive_output(SILENCE_LIMIT_SECONDS))
    assert start["type"] == "http.response.start", start
    received = b""
    while True:
        message = on_stream_loop(communicator.receive_output(SILENCE_LIMIT_SECONDS))
        received += message.get("body", b"")
        if not message.get("more_body", False):
            break
    on_stream_loop(communicator.wait(SILENCE_LIMIT_SECONDS))
    names = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return Answer(start["status"], names, received)
