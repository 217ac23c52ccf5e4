"""The chaos session's throwaway PostgreSQL cluster and Redis server, and a
platform per test on them (tests.chaos.harness). Run by `make chaos`."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.chaos.harness import Cluster, Platform, Watcher, chaos_cluster, missing_tools


@pytest.fixture(scope="session", autouse=True)
def quiet_http_client_log() -> None:
    # httpx logs each request at INFO: thousands of lines around the figures `make chaos` prints.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    reason = missing_tools()
    if reason:
        pytest.skip(f"chaos tests need their own PostgreSQL and Redis servers: {reason}")
    with chaos_cluster(tmp_path_factory.mktemp("chaos")) as started:
        yield started


@pytest.fixture
def platform(cluster, tmp_path) -> Iterator[Platform]:
    started = Platform(cluster, tmp_path)
    try:
        yield started
    finally:
        started.shutdown()


@pytest.fixture
def watcher(platform) -> Iterator[Watcher]:
    watching = Watcher(platform)
    try:
        yield watching
    finally:
        if watching.is_alive():
            watching.stop()
