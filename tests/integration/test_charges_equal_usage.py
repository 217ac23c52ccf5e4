"""A task is charged what it used, never capped at what admission reserved.

Admission reserves the prompt's tokens as the model's own adapter counts them
(the tiny model's tokenizer and chat template), and falls back to characters
÷ 4 where the adapter cannot count (a remote OpenAI-compatible model). The
tenant's usage API shows the real charge either way, even when it takes the
budget past its limit — and then the next task is refused.
"""

from __future__ import annotations

import uuid

import pytest

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.scheduler.admission import estimate_prompt_tokens
from apps.tasks.models import Task
from apps.tenants.models import TaskCharge
from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path, local_files_only=True)


def _submit(api, body: dict) -> Task:
    created = api.post(TASKS, body)
    assert created.status == 201, created.body
    return Task.objects.get(pk=created.body["id"])


def _run(api, task: Task) -> dict:
    execute_task(uuid.UUID(str(task.pk)))
    done = api.get(f"{TASKS}/{task.pk}")
    assert done.status == 200 and done.body["status"] == "succeeded", done.body
    return done.body


def _usage(api) -> dict:
    usage = api.get("/api/v1/usage")
    assert usage.status == 200, usage.body
    return usage.body


def test_a_chat_on_the_tiny_model_reserves_its_tokenizers_count_and_is_charged_in_full(
    acme, acme_api, tiny_model_path, tokenizer
):
    LLMModel.objects.create(
        name="tiny-charges", adapter="transformers", adapter_config={"path": tiny_model_path}, is_public=True
    )
    change_tenant_plan(acme, {"budget_tokens": 10_000})
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who goes first?"}]
    templated = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    real_prompt_tokens = len(tokenizer(templated, add_special_tokens=False).input_ids)
    # The turn markers are tokens the characters ÷ 4 rule never sees.
    assert real_prompt_tokens > estimate_prompt_tokens(None, messages)

    task = _submit(acme_api, {"model": "tiny-charges", "messages": messages, "max_tokens": 6, "temperature": 0})

    reserved = real_prompt_tokens + 6
    assert TaskCharge.objects.get(task_id=task.pk).reserved_tokens == reserved
    assert (_usage(acme_api)["spent_tokens"], _usage(acme_api)["reserved_tokens"]) == (0, reserved)

    done = _run(acme_api, task)

    assert done["usage"]["prompt_tokens"] == real_prompt_tokens
    usage = _usage(acme_api)
    assert (usage["spent_tokens"], usage["reserved_tokens"]) == (done["usage"]["total_tokens"], 0)
    assert usage["remaining_tokens"] == 10_000 - done["usage"]["total_tokens"]


def test_a_remote_prompt_the_estimate_undercounts_is_charged_in_full_past_the_budget(acme, acme_api, stub_url):
    # The stub counts a prompt's words as its tokens: ten one-letter words are 10
    # tokens, where characters ÷ 4 reserves 5 (19 characters).
    prompt = "a b c d e f g h i j"
    LLMModel.objects.create(
        name="remote-charges", adapter="openai_compatible", is_public=True,
        adapter_config={"base_url": stub_url, "model": f"echo:{uuid.uuid4().hex[:8]}", "retry_backoff": 0.01},
    )
    reserved = estimate_prompt_tokens(prompt, None) + 3
    assert reserved == 8
    change_tenant_plan(acme, {"budget_tokens": reserved})  # exactly what the task reserves

    task = _submit(acme_api, {"model": "remote-charges", "prompt": prompt, "max_tokens": 3})
    assert TaskCharge.objects.get(task_id=task.pk).reserved_tokens == reserved
    done = _run(acme_api, task)

    assert done["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    usage = _usage(acme_api)
    # Charged all 13, five past the budget of 8: the honest figure, not the reservation.
    assert (usage["budget_tokens"], usage["spent_tokens"], usage["reserved_tokens"]) == (8, 13, 0)
    assert usage["remaining_tokens"] == 0
    (key,) = usage["by_key"]
    assert (key["prompt_tokens"], key["completion_tokens"], key["total_tokens"]) == (10, 3, 13)

    refused = acme_api.post(TASKS, {"model": "remote-charges", "prompt": "one more", "max_tokens": 1})
    assert (refused.status, refused.body["error"]["code"]) == (402, "budget_exceeded"), refused.body
