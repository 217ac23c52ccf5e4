"""Fixtures shared by integration tests: the remote (OpenAI-compatible) models' stub, the stream log's back ends,
a worker's lease keeper (suspension tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from apps.catalog.models import LLMModel
from apps.catalog.plugins import registry
from apps.runtime.leases import LeaseKeeper
from apps.streaming import log as log_module
from apps.streaming.log import DatabaseStreamLog, RedisStreamLog, StreamLog
from tests.stubs.openai_stub import serve_openai_stub


@pytest.fixture(scope="module")
def stub_url(tmp_path_factory) -> Iterator[str]:
    """A local OpenAI-compatible stub (the outside world), one per test module."""
    with serve_openai_stub(tmp_path_factory.mktemp("openai-stub") / "stub.log") as url:
        yield url


@pytest.fixture
def remote_model(db, stub_url):
    """Makes a public LLMModel served by the stub, as the admin writes it (the row alone);
    returns (platform model name, remote model name)."""
    assert "openai_compatible" in registry.adapter_names, (
        "the openai_compatible plugin is not enabled: add plugins.openai_compatible to LLMAGENTOS_PLUGINS"
    )

    def make(mode: str = "echo", **config) -> tuple[str, str]:
        suffix = uuid.uuid4().hex[:8]
        remote_name = f"{mode}:{suffix}"  # fresh counters on the stub for this test
        model = LLMModel.objects.create(
            name=f"remote-{suffix}",
            adapter="openai_compatible",
            adapter_config={"base_url": stub_url, "model": remote_name, "retry_backoff": 0.01, **config},
            is_public=True,
        )
        return model.name, remote_name

    return make


@pytest.fixture(params=["database", "redis"])
def stream_log_backend(request, monkeypatch, settings) -> StreamLog:
    """The stream log every writer and reader in this process uses (apps.streaming.log's
    process-wide instance), on each back end; Redis only where the run has one."""
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("no Redis in this run (REDIS_URL unset); the distributed suite covers it")
        backend: StreamLog = RedisStreamLog(settings.REDIS_URL, settings.HUEY_NAME, settings.STREAM_TTL_SECONDS)
    else:
        backend = DatabaseStreamLog()
    monkeypatch.setattr(log_module, "_log", backend)
    return backend


@pytest.fixture
def keeper() -> Iterator[LeaseKeeper]:
    """A started keeper of the test's own, renewing once an hour: a suspension or a
    cancel reaches it only through its wake-up."""
    keeper = LeaseKeeper(renew_seconds=3600)
    keeper.start()
    yield keeper
    keeper.stop()
