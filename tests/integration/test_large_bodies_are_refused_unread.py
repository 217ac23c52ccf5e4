"""A body over MAX_REQUEST_BODY_BYTES is refused with 413 before it is read.

Through the real ASGI application (llmagentos.asgi): the answer comes while
the client has sent only the headers and a first part of the body, so a
client without credentials cannot make a server take in hundreds of
megabytes before being refused.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.gateway_support import CHAT, asgi_communicator, http_scope
from tests.integration.stream_support import SILENCE_LIMIT_SECONDS, on_stream_loop

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MIB = 1024 * 1024
FIRST_PART = b"x" * (64 * 1024)


def _answer(communicator) -> tuple[int, dict[str, str], dict]:
    """The status, headers and JSON body the application sent."""
    start = on_stream_loop(communicator.receive_output(SILENCE_LIMIT_SECONDS))
    assert start["type"] == "http.response.start", start
    body = b""
    while True:
        part = on_stream_loop(communicator.receive_output(SILENCE_LIMIT_SECONDS))
        assert part["type"] == "http.response.body", part
        body += part.get("body", b"")
        if not part.get("more_body", False):
            break
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, json.loads(body)


def _assert_too_large(status: int, headers: dict[str, str], body: dict) -> None:
    assert status == 413, body
    assert (body["error"]["type"], body["error"]["code"]) == ("invalid_request_error", "request_too_large"), body
    assert headers["x-request-id"]


@pytest.mark.parametrize("path", ["/api/v1/tasks", CHAT])
def test_a_300_mb_body_without_credentials_is_refused_from_its_headers(db, path):
    scope = http_scope(path, {"Content-Type": "application/json", "Content-Length": str(300 * MIB)})
    communicator = asgi_communicator(scope)

    # Only the first 64 KiB of the 300 MB go; more_body says the rest is coming.
    on_stream_loop(communicator.send_input({"type": "http.request", "body": FIRST_PART, "more_body": True}))

    _assert_too_large(*_answer(communicator))


def test_a_body_without_a_length_is_refused_once_it_passes_the_limit(db, settings):
    settings.MAX_REQUEST_BODY_BYTES = 200 * 1024
    communicator = asgi_communicator(http_scope("/api/v1/tasks", {"Content-Type": "application/json"}))

    # Chunked: 4 × 64 KiB passes 200 KiB; the body never ends (more_body stays true).
    for _ in range(4):
        on_stream_loop(communicator.send_input({"type": "http.request", "body": FIRST_PART, "more_body": True}))

    _assert_too_large(*_answer(communicator))


def test_a_body_within_the_limit_sent_in_parts_is_read_whole(acme_key, settings):
    """The counterpart: under the limit, the parts reach Django as one body."""
    settings.MAX_REQUEST_BODY_BYTES = 200 * 1024
    body = json.dumps({"model": "echo", "prompt": "y" * (150 * 1024)}).encode()
    headers = {
        "Content-Type": "application/json", "Content-Length": str(len(body)), "Authorization": f"Bearer {acme_key}"
    }
    communicator = asgi_communicator(http_scope("/api/v1/tasks", headers))

    half = len(body) // 2
    on_stream_loop(communicator.send_input({"type": "http.request", "body": body[:half], "more_body": True}))
    on_stream_loop(communicator.send_input({"type": "http.request", "body": body[half:], "more_body": False}))

    status, _, answer = _answer(communicator)
    assert status == 201, answer
