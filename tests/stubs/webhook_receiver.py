"""A webhook receiver for tests: an HTTP server in a thread of the test process
(the outside world the platform calls back), recording every request.

    with WebhookReceiver(fail_first=2) as receiver:
        ...  # receiver.url, receiver.received

It answers ``fail_status`` (500) to its first ``fail_first`` requests, then 200;
``verify(secret, request)`` checks a request's signature as a receiver should
(docs/api.md "Webhooks").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers["x-llmagentos-event-id"]


def verify(secret: str, request: Received) -> bool:
    """Whether the request's X-LLMAgentOS-Signature is the HMAC-SHA256 of "<timestamp>.<body>"."""
    timestamp = request.headers["x-llmagentos-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers["x-llmagentos-signature"], f"sha256={expected}")


class WebhookReceiver:
    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    failing = len(receiver.received) <= receiver.fail_first
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        # A path and a query of the tenant's own: sent as given, shown to nobody.
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/llm?token=receiver-token"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
