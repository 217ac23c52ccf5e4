"""A model's changed config reaches a running worker without a restart: its next task
gets an adapter with the new config, and the adapter of the old one is unloaded — at
once when idle, after its last stream when one is running."""

from __future__ import annotations

import pytest

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel
from apps.runtime import adapters as loaded_adapters

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_adapter_cache():
    """This process plays the worker: its adapter cache starts and ends empty."""
    loaded_adapters.retire_adapters(keep=())
    yield
    loaded_adapters.retire_adapters(keep=())


@pytest.fixture
def tiny(tiny_model_path) -> LLMModel:
    return catalog.create_model("tiny-config", "transformers", {"path": tiny_model_path}, is_public=True)


def _change(model: LLMModel, **config) -> LLMModel:
    return catalog.update_model(model, {"adapter_config": {**model.adapter_config, **config}})


def test_the_next_task_gets_the_new_config_and_the_idle_old_adapter_is_unloaded(tiny):
    old = loaded_adapters.adapter_for(tiny)
    loaded_adapters.release_adapter(old)

    changed = _change(tiny, device="cpu")
    new = loaded_adapters.adapter_for(changed)
    loaded_adapters.release_adapter(new)

    assert new is not old and new.config["device"] == "cpu"
    assert new.health() and not old.health()  # the old one's weights are gone
    assert loaded_adapters.loaded_specs() == ["tiny-config"]
    assert loaded_adapters.adapter_for(changed) is new  # kept for the following tasks
    loaded_adapters.release_adapter(new)


def test_an_old_adapter_still_streaming_is_unloaded_after_its_last_stream(tiny):
    streaming = loaded_adapters.adapter_for(tiny)  # a task still running on the old config

    new = loaded_adapters.adapter_for(_change(tiny, device="cpu"))

    assert streaming.health(), "unloaded under a running stream"
    loaded_adapters.release_adapter(streaming)
    assert not streaming.health() and new.health()
    loaded_adapters.release_adapter(new)
