"""/v1's completions are answered by the gateway's ASGI front (apps.gateway.front),
without Django's request cycle, and answer as the Django views do.

The front only changes the transport: the same code builds the answer. What
it must do in Django's place is checked here: the headers Django's middleware
adds (HSTS included where set), the redirect to HTTPS and the Host check left
to Django, the request counter under the route's name, and that the request
never entered Django's cycle (no ``request_started``). Streams, whole completions
and disconnects through the front: test_gateway_sse.py and
test_gateway_disconnect.py (their AsgiCall goes through llmagentos.asgi).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application
from django.core.signals import request_started
from django.test import Client, override_settings

from apps.gateway.front import GatewayFront
from apps.tasks.models import Task
from tests.integration.gateway_support import CHAT, COMPLETIONS, AsgiCall, asgi_communicator, http_scope, sse_events
from tests.integration.stream_support import SILENCE_LIMIT_SECONDS, on_stream_loop
from tests.metrics_support import delta, scrape

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

TWO_CHOICES = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "n": 2}
# Headers whose values are the request's own (its id) or the transport's (the length).
PER_REQUEST = {"x-request-id", "content-length"}


class _Started:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, **_: Any) -> None:
        self.count += 1


@pytest.fixture
def django_requests():
    started = _Started()
    request_started.connect(started, weak=False)
    yield started
    request_started.disconnect(started)


def _through_django(key: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    response = Client().post(path, json.dumps(body), content_type="application/json",
                             headers={"Authorization": f"Bearer {key}"})
    return response.status_code, {name.lower(): value for name, value in response.headers.items()}, response.content


def _through_the_front(key: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    call = AsgiCall(key, path, body)
    status, headers = call.start()
    return status, headers, call.read_to_end()


@pytest.mark.parametrize(("key", "body", "status"), [
    ("acme", TWO_CHOICES, 400),
    ("wrong", {"model": "echo", "prompt": "hi"}, 401),
    ("acme", {"model": "no-such-model", "prompt": "hi"}, 404),
])
def test_a_refusal_is_the_same_through_the_front_and_through_django(acme_key, key, body, status):
    key = acme_key if key == "acme" else "lla_wrong_key"
    path = COMPLETIONS if "prompt" in body else CHAT

    front = _through_the_front(key, path, body)
    django = _through_django(key, path, body)

    assert front[0] == django[0] == status
    assert front[2] == django[2]
    assert {k: v for k, v in front[1].items() if k not in PER_REQUEST} == {
        k: v for k, v in django[1].items() if k not in PER_REQUEST
    }
    assert front[1]["content-length"] == str(len(front[2]))


def test_completions_never_enter_djangos_request_cycle(acme_key, django_requests):
    call = AsgiCall(acme_key, CHAT, {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    status, headers = call.start()
    assert (status, headers["content-type"]) == (200, "text/event-stream")
    assert sse_events(call.read())[0]["choices"][0]["delta"]["role"] == "assistant"
    call.disconnect()  # nothing runs the task here

    assert django_requests.count == 0


def test_other_routes_and_methods_go_on_to_django(acme_key, django_requests):
    for method, path in (("GET", "/v1/models"), ("GET", CHAT)):
        communicator = asgi_communicator(http_scope(path, {"Authorization": f"Bearer {acme_key}"}, method=method))
        on_stream_loop(communicator.send_input({"type": "http.request", "body": b""}))
        start = on_stream_loop(communicator.receive_output(SILENCE_LIMIT_SECONDS))
        assert start["status"] == (200 if path == "/v1/models" else 405)
        on_stream_loop(communicator.wait(SILENCE_LIMIT_SECONDS))
    assert django_requests.count == 2


def test_the_front_counts_its_requests_under_the_routes_name(acme_key, staff_client):
    before = scrape(staff_client)

    _through_the_front(acme_key, CHAT, TWO_CHOICES)
    _through_the_front(acme_key, COMPLETIONS, {"model": "echo", "prompt": "hi", "n": 2})

    after = scrape(staff_client)
    for route in ("v1/chat/completions", "v1/completions"):
        assert delta(before, after, "llmagentos_http_requests_total", route=route, method="POST", status="400") == 1


def test_an_unexpected_failure_is_a_500_in_the_contracts_shape(acme_key, monkeypatch):
    # Fault injection into the answer's code: what Django's handler would turn into
    # its JSON 500, the front must too (never the ASGI server's plain-text one).
    async def failing(*_: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("apps.gateway.front.complete", failing)

    status, headers, body = _through_the_front(acme_key, CHAT, TWO_CHOICES)

    assert (status, headers["content-type"]) == (500, "application/json")
    assert json.loads(body)["error"] == {
        "type": "server_error", "code": "internal_error", "message": "internal server error", "param": None,
    }


def _front_as_set(scope_changes: dict[str, Any], headers: dict[str, str]) -> tuple[dict[str, Any], list[Any]]:
    """A chat completion through a front (and a Django) built under the current settings:
    the answer's start message, and the rest of its messages."""
    scope = {**http_scope(CHAT, {"Content-Type": "application/json", **headers}), **scope_changes}
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True})

    async def make() -> ApplicationCommunicator:
        return ApplicationCommunicator(GatewayFront(get_asgi_application()), scope)

    communicator = on_stream_loop(make())
    on_stream_loop(communicator.send_input({"type": "http.request", "body": body.encode()}))
    start = on_stream_loop(communicator.receive_output(SILENCE_LIMIT_SECONDS))
    rest = [on_stream_loop(communicator.receive_output(SILENCE_LIMIT_SECONDS))]
    on_stream_loop(communicator.send_input({"type": "http.disconnect"}))
    on_stream_loop(communicator.wait(SILENCE_LIMIT_SECONDS))
    return start, rest


@override_settings(SECURE_SSL_REDIRECT=True)
def test_a_plain_http_completion_is_redirected_to_https_as_django_would_and_submits_nothing(acme, acme_key):
    start, _ = _front_as_set({}, {"Authorization": f"Bearer {acme_key}"})

    assert start["status"] == 301
    assert dict(start["headers"])[b"Location"] == b"https://testserver/v1/chat/completions"
    assert not Task.objects.for_tenant(acme).exists()


def test_a_host_outside_allowed_hosts_is_refused_as_django_would_and_submits_nothing(acme, acme_key):
    start, _ = _front_as_set(
        {"headers": [(b"host", b"evil.example"), (b"content-type", b"application/json"),
                     (b"authorization", f"Bearer {acme_key}".encode())]},
        {},
    )

    assert start["status"] == 400
    assert not Task.objects.for_tenant(acme).exists()


@override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=3600)
def test_an_https_completion_is_answered_by_the_front_with_djangos_security_headers(
    acme, acme_key, django_requests
):
    start, _ = _front_as_set({"scheme": "https"}, {"Authorization": f"Bearer {acme_key}"})

    headers = {name.lower(): value for name, value in start["headers"]}
    assert start["status"] == 200
    assert headers[b"strict-transport-security"] == b"max-age=3600"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert django_requests.count == 0
    assert Task.objects.for_tenant(acme).count() == 1
