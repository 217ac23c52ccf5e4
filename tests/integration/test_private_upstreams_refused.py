"""A remote model's base_url may not reach the platform's own network: loopback,
private, link-local and other non-public addresses are refused when the model is
registered (a 400 naming base_url) and at every connection (the task fails,
permanently, and nothing is sent), so a name that resolves elsewhere after
registration (DNS rebinding) is caught too. ALLOW_PRIVATE_UPSTREAMS (on in the
local profile the tests run in; off in production) lets an operator allow them."""

from __future__ import annotations

import socket
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.catalog.adapters import AdapterError, GenerationRequest
from apps.catalog.models import LLMModel
from apps.catalog.plugins import registry
from apps.security.services import issue_operator_token
from tests.conftest import ApiClient
from tests.integration.remote_support import run_task
from tests.ops_support import make_operator
from tests.stubs.openai_stub import stub_stats

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/ops/models"
REBINDING_HOST = "models.rebinding.test"
PUBLIC_ADDRESS = "93.184.215.14"


@pytest.fixture
def private_refused(settings):
    settings.ALLOW_PRIVATE_UPSTREAMS = False  # the production default


@pytest.fixture
def operator(db) -> ApiClient:
    return ApiClient(issue_operator_token(make_operator()).secret)


@pytest.fixture
def dns(monkeypatch) -> dict[str, str]:
    """REBINDING_HOST resolves to whatever the test puts in ``dns["address"]``; other names as usual."""
    answers = {"address": PUBLIC_ADDRESS}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == REBINDING_HOST:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answers["address"], int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def _register(operator: ApiClient, base_url: str, name: str = "remote"):
    return operator.post(MODELS, {
        "name": name, "adapter": "openai_compatible", "is_public": True,
        "adapter_config": {"base_url": base_url, "model": "echo:any", "max_retries": 0},
    })


@pytest.mark.parametrize(("base_url", "kind"), [
    ("http://127.0.0.1:8000/v1", "loopback"),
    ("http://localhost:8000/v1", "loopback"),
    ("http://[::1]:8000/v1", "loopback"),
    ("http://10.1.2.3/v1", "private"),
    ("http://192.168.0.10/v1", "private"),
    ("http://169.254.169.254/latest", "link-local"),
    ("http://0.0.0.0:8000/v1", "unspecified"),
    ("http://224.0.0.1/v1", "multicast"),
    ("http://240.0.0.1/v1", "reserved"),
    ("http://[::ffff:127.0.0.1]/v1", "loopback"),
])
def test_registering_a_non_public_base_url_is_a_400_naming_it(private_refused, operator, base_url, kind):
    response = _register(operator, base_url)

    assert response.status == 400, response.body
    error = response.body["error"]
    assert error["param"] == "adapter_config"
    assert "base_url" in error["message"] and kind in error["message"]
    assert not LLMModel.objects.filter(name="remote").exists()


def test_add_model_refuses_it_too(private_refused):
    with pytest.raises(CommandError, match="base_url"):
        call_command(
            "add_model", "remote", "--adapter", "openai_compatible",
            "--config", '{"base_url": "http://127.0.0.1:8000/v1", "model": "m"}',
            stdout=StringIO(), stderr=StringIO(),
        )
    assert not LLMModel.objects.filter(name="remote").exists()


def test_a_public_address_is_registered(private_refused, operator, dns):
    assert _register(operator, f"http://{REBINDING_HOST}/v1").status == 201


def test_the_setting_allows_private_upstreams(settings, operator):
    settings.ALLOW_PRIVATE_UPSTREAMS = True

    assert _register(operator, "http://127.0.0.1:8000/v1").status == 201


def test_a_model_on_a_private_address_fails_its_task_and_sends_nothing(
    private_refused, acme_api, remote_model, stub_url
):
    # Written as a row (the admin does not ask the adapter): the worker's adapter refuses it.
    model, remote_name = remote_model()

    done = run_task(acme_api, {"model": model, "prompt": "hello"})

    assert done["status"] == "failed", done
    assert done["error"]["code"] == "model_unavailable"
    assert "base_url" in done["error"]["message"] and "loopback" in done["error"]["message"]
    assert done["attempt"] == 1  # permanent: no second attempt
    assert stub_stats(stub_url, remote_name)["requests"] == 0


def test_a_name_that_resolves_to_loopback_after_the_check_is_refused_at_connection(private_refused, dns, stub_url):
    port = stub_url.rsplit(":", 1)[1].split("/", 1)[0]
    remote_name = "echo:rebinding"
    adapter = registry.create_adapter("openai_compatible", {
        "base_url": f"http://{REBINDING_HOST}:{port}/v1", "model": remote_name, "max_retries": 0,
    })  # checked: the name resolves to a public address
    adapter.load()
    dns["address"] = "127.0.0.1"  # now it points where the stub listens

    with pytest.raises(AdapterError) as raised:
        list(adapter.stream(GenerationRequest(request_id="r1", prompt="hello", messages=None, max_tokens=8)))

    assert raised.value.permanent
    assert "refuses this model's remote address" in str(raised.value)
    assert stub_stats(stub_url, remote_name)["requests"] == 0
    assert adapter.health() is False
