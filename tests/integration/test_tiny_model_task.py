"""A task on the tiny local model, from the REST API through the worker code path.

The model is the real transformers adapter serving the tiny random-weight
Llama (its text is meaningless by design), so this checks real tokenization
and generation end to end: the recorded usage is the tokenizer's count and
the recorded output is exactly what the model generates for those parameters.
"""

from __future__ import annotations

import uuid

import pytest

from apps.catalog.adapters import GenerationRequest, TextChunk, Usage
from apps.catalog.models import LLMModel
from apps.catalog.plugins import registry
from apps.runtime.execution import execute_task

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
PROMPT = "Operators watch the queues and the workers."


@pytest.fixture
def tiny_model(tiny_model_path) -> LLMModel:
    assert "transformers" in registry.adapter_names, "plugins.transformers must be enabled (LLMAGENTOS_PLUGINS)"
    return LLMModel.objects.create(
        name="tiny-test", adapter="transformers", adapter_config={"path": tiny_model_path}, is_public=True
    )


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path, local_files_only=True)


def _submit_and_run(api, body: dict) -> dict:
    created = api.post(TASKS, {"model": "tiny-test", **body})
    assert created.status == 201, created.body
    execute_task(uuid.UUID(created.body["id"]))
    detail = api.get(f"{TASKS}/{created.body['id']}")
    assert detail.status == 200, detail.body
    return detail.body


def _generate_directly(tiny_model_path: str, request: GenerationRequest) -> tuple[str, Usage]:
    """The same generation without the platform: a fresh adapter instance."""
    adapter = registry.create_adapter("transformers", {"path": tiny_model_path})
    adapter.load("cpu")
    items = list(adapter.stream(request))
    return "".join(item.text for item in items if isinstance(item, TextChunk)), items[-1]


def test_prompt_task_succeeds_with_real_usage_and_the_models_output(acme_api, tiny_model, tiny_model_path, tokenizer):
    params = {"max_tokens": 12, "temperature": 0.9, "top_p": 0.95, "seed": 11}

    task = _submit_and_run(acme_api, {"prompt": PROMPT, **params})

    assert task["status"] == "succeeded", task["error"]
    usage = task["usage"]
    assert usage["prompt_tokens"] == len(tokenizer(PROMPT).input_ids)
    assert 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    text, direct_usage = _generate_directly(
        tiny_model_path, GenerationRequest(request_id="direct", prompt=PROMPT, messages=None, **params)
    )
    assert task["output"] == text
    assert usage == direct_usage.as_dict()


def test_chat_task_succeeds_through_the_chat_template(acme_api, tiny_model, tokenizer):
    messages = [{"role": "system", "content": "Answer in one line."}, {"role": "user", "content": "Who goes first?"}]

    task = _submit_and_run(acme_api, {"messages": messages, "max_tokens": 8, "temperature": 0})

    assert task["status"] == "succeeded", task["error"]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert task["usage"]["prompt_tokens"] == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    assert 1 <= task["usage"]["completion_tokens"] <= 8
    assert isinstance(task["output"], str)


def test_a_prompt_longer_than_the_context_fails_without_retries(acme_api, tiny_model):
    task = _submit_and_run(acme_api, {"prompt": "word " * 3000, "max_tokens": 4})

    assert task["status"] == "failed"
    assert task["error"]["code"] == "generation_failed"
    assert "context" in task["error"]["message"]
    assert task["attempt"] == 1, "a permanent error is not retried"


def test_a_model_whose_directory_is_gone_is_unavailable(acme_api, tmp_path, tiny_model):
    LLMModel.objects.filter(pk=tiny_model.pk).update(adapter_config={"path": str(tmp_path / "deleted")})

    task = _submit_and_run(acme_api, {"prompt": PROMPT, "max_tokens": 4})

    assert task["status"] == "failed"
    assert task["error"]["code"] == "model_unavailable"
    assert "path" in task["error"]["message"]
