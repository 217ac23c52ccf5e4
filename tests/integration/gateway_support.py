"""Calling the OpenAI-compatible /v1 in this process, as an OpenAI client does.

Refusals and submissions go through the Django test client (the full stack,
middleware included). Answers that wait for the task (a stream, a whole
completion) go through the project's real ASGI application on the stream
test loop (tests.integration.stream_support), so the gateway reads the task
through the same stream hub as a server; tests using ``AsgiCall`` need
committed rows (``pytest.mark.django_db(transaction=True)``) and run the task
themselves with the worker's own code (apps.runtime.execution.execute_task).
"""

from __future__ import annotations

import json
import time
from typing import Any

from asgiref.testing import ApplicationCommunicator
from django.test import Client

from apps.tasks.models import Task
from apps.tenants.models import Tenant
from llmagentos.asgi import application
from tests.integration.stream_support import SILENCE_LIMIT_SECONDS, on_stream_loop

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def submit_streamed(key: str, path: str, body: dict[str, Any], **headers: str) -> str:
    """Submit with ``stream: true`` and leave the stream unread; the task's id.

    The answer's headers come before any event, so the task can be looked at
    as it was submitted (nothing runs it here). The test client closes the
    stream unread, which is a client leaving: the request asks to keep its task."""
    return streamed_headers(key, path, body, **headers)["X-Task-ID"]


def streamed_headers(key: str, path: str, body: dict[str, Any], **headers: str) -> dict[str, str]:
    """``submit_streamed``, answering the response's headers."""
    response = Client().post(
        path, json.dumps({**body, "stream": True}), content_type="application/json",
        headers={"Authorization": f"Bearer {key}", "X-Keep-On-Disconnect": "true", **headers},
    )
    assert response.status_code == 200, getattr(response, "content", response)
    assert response["Content-Type"] == "text/event-stream"
    # Not response.close(): for a stream the test client would then run Django's
    # request_finished, which closes this thread's database connection mid-test.
    return dict(response.headers)


def sse_events(raw: bytes) -> list[Any]:
    """The data of each server-sent event of a body, decoded ("[DONE]" stays a string);
    every line must be a data line, a comment or the blank line ending an event."""
    text = raw.decode()
    assert text.endswith("\n\n"), text[-200:]
    events: list[Any] = []
    for block in text.split("\n\n")[:-1]:
        data = [line.removeprefix("data: ") for line in block.split("\n") if not line.startswith(":")]
        if not data:
            continue  # a keep-alive comment
        assert len(data) == 1 and block.split("\n")[-1].startswith("data: "), block
        events.append(data[0] if data[0] == "[DONE]" else json.loads(data[0]))
    return events


class AsgiCall:
    """One HTTP request through ``llmagentos.asgi.application``."""

    def __init__(self, key: str, path: str, body: dict[str, Any], **headers: str) -> None:
        scope = http_scope(path, {"Content-Type": "application/json", "Authorization": f"Bearer {key}", **headers})
        self._communicator = asgi_communicator(scope)
        on_stream_loop(self._communicator.send_input({"type": "http.request", "body": json.dumps(body).encode()}))
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.finished = False

    def start(self) -> tuple[int, dict[str, str]]:
        """Wait for the answer's status and headers."""
        message = on_stream_loop(self._communicator.receive_output(SILENCE_LIMIT_SECONDS))
        assert message["type"] == "http.response.start", message
        self.status = message["status"]
        self.headers = {name.decode().lower(): value.decode() for name, value in message["headers"]}
        return self.status, self.headers

    def read(self) -> bytes:
        """The next part of the body (b"" once it has ended)."""
        if self.finished:
            return b""
        message = on_stream_loop(self._communicator.receive_output(SILENCE_LIMIT_SECONDS))
        assert message["type"] == "http.response.body", message
        self.finished = not message.get("more_body", False)
        return message.get("body", b"")

    def read_to_end(self) -> bytes:
        # A guard against a hung test (a stream kept open by keep-alives), not a measurement.
        deadline = time.monotonic() + 2 * SILENCE_LIMIT_SECONDS
        body = b""
        while not self.finished:
            assert time.monotonic() < deadline, f"the stream never ended; so far: {body[-500:]!r}"
            body += self.read()
        return body

    def disconnect(self) -> None:
        """The client goes away; returns once the application has finished with it."""
        on_stream_loop(self._communicator.send_input({"type": "http.disconnect"}))
        on_stream_loop(self._communicator.wait(SILENCE_LIMIT_SECONDS))


def http_scope(path: str, headers: dict[str, str], method: str = "POST") -> dict[str, Any]:
    """The ASGI scope of an HTTP request to ``path`` with these headers (and Host)."""
    raw_headers = [(b"host", b"testserver")]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": raw_headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }


def asgi_communicator(scope: dict[str, Any]) -> ApplicationCommunicator:
    """``llmagentos.asgi.application`` handling ``scope``, on the stream test loop:
    send and receive through ``on_stream_loop``."""
    return on_stream_loop(_make_communicator(scope))


async def _make_communicator(scope: dict[str, Any]) -> ApplicationCommunicator:
    # Made on the stream loop: the application's task belongs to that loop.
    return ApplicationCommunicator(application, scope)


def submitted_task(tenant: Tenant) -> Task:
    """The tenant's one task, once a request in flight has submitted it."""
    deadline = time.monotonic() + SILENCE_LIMIT_SECONDS  # a guard against a hung test, not a measurement
    while True:
        task = Task.objects.for_tenant(tenant).first()
        if task is not None:
            return task
        assert time.monotonic() < deadline, "the request never submitted its task"
        time.sleep(0.01)
