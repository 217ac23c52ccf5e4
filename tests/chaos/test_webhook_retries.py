"""A webhook receiver that fails twice, then accepts: it gets each task's
event under one event id on every attempt, each signed with the tenant's
secret, and accepts it once; a callback URL on a private address is refused
unless the operator allows them."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.chaos.harness import ECHO_MODEL
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

FAILURES_BEFORE_SUCCESS = 2
TASKS = 5


@dataclass(frozen=True)
class Received:
    event_id: str
    timestamp: str
    signature: str
    body: bytes
    answered: int


class FlakyReceiver(http.server.ThreadingHTTPServer):
    """Answers 500 to the first two attempts of each event id, then 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.received: list[Received] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks?token=t0ken"

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.answered == 200]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FlakyReceiver

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        event_id = self.headers.get("X-LLMAgentOS-Event-Id", "")
        with self.server.lock:
            earlier = sum(1 for r in self.server.received if r.event_id == event_id)
            answer = 500 if earlier < FAILURES_BEFORE_SUCCESS else 200
            self.server.received.append(Received(
                event_id, self.headers.get("X-LLMAgentOS-Timestamp", ""),
                self.headers.get("X-LLMAgentOS-Signature", ""), body, answer,
            ))
        self.send_response(answer)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test reads what it received, not a log


@pytest.fixture
def receiver() -> Iterator[FlakyReceiver]:
    server = FlakyReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _valid(secret: str, received: Received) -> bool:
    expected = hmac.new(secret.encode(), f"{received.timestamp}.".encode() + received.body, hashlib.sha256)
    return hmac.compare_digest(received.signature, "sha256=" + expected.hexdigest())


def test_a_failing_receiver_gets_each_event_once_per_id_signed(platform, receiver):
    # Short back-off: three attempts in seconds, not minutes.
    platform.env.update(WEBHOOK_BACKOFF_SECONDS="1", WEBHOOK_BACKOFF_MAX_SECONDS="2", WEBHOOKS_ALLOW_PRIVATE="false")
    server = platform.start_server()
    refused = platform.client.post(
        "/api/v1/tasks", json={"model": ECHO_MODEL, "prompt": "x", "webhook_url": receiver.url}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "webhook_url", refused.text

    # The operator allows private addresses (the receiver is on loopback).
    platform.env["WEBHOOKS_ALLOW_PRIVATE"] = "true"
    platform.restart(server, WEBHOOKS_ALLOW_PRIVATE="true")
    platform.start_scheduler()
    platform.start_worker("worker-0")
    created = platform.client.post("/api/v1/webhooks/secret")
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]

    task_ids = [platform.submit(f"webhook task {i}", webhook_url=receiver.url) for i in range(TASKS)]
    platform.wait_all_finished(task_ids, timeout=120)
    platform.wait_for(lambda: len(receiver.accepted()) >= TASKS, 120, "not every event was accepted")

    by_event: dict[str, list[Received]] = {}
    for received in receiver.received:
        by_event.setdefault(received.event_id, []).append(received)
    assert len(by_event) == TASKS
    assert sorted(json.loads(r.body)["task"]["id"] for r in receiver.accepted()) == sorted(task_ids)
    for event_id, attempts in by_event.items():
        assert [r.answered for r in attempts] == [500] * FAILURES_BEFORE_SUCCESS + [200], event_id
        assert all(_valid(secret, r) for r in attempts), "a delivery with a bad signature"
        assert len({r.body for r in attempts}) == 1, "the event changed between attempts"
        event = json.loads(attempts[0].body)
        assert (event["event_id"], event["task"]["status"]) == (event_id, "succeeded")
        assert "output" not in event["task"], "the output was sent unasked"
