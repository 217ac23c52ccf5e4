"""Fixtures shared by the integration tests of remote (OpenAI-compatible) models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stubs.openai_stub import serve_openai_stub


@pytest.fixture(scope="module")
def stub_url(tmp_path_factory) -> Iterator[str]:
    """A local OpenAI-compatible stub (the outside world), one per test module."""
    with serve_openai_stub(tmp_path_factory.mktemp("openai-stub") / "stub.log") as url:
        yield url
