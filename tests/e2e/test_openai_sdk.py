"""The official ``openai`` package, unmodified, against the real platform
(run_platform: uvicorn, the scheduler and a worker): /v1 as existing OpenAI
code uses it. Every request is a task, read back through GET /api/v1/tasks/{id}.

One platform for the module (started once: a start builds the tiny model).
Runs on SQLite (embedded) and on PostgreSQL + Redis, like the whole suite.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.harness import Platform, add_echo_model, manage, wait_finished

pytestmark = pytest.mark.e2e

CRAWL_WORDS = 40
CRAWL_PROMPT = " ".join(f"w{i}" for i in range(CRAWL_WORDS))
MESSAGES = [{"role": "user", "content": "Say hello."}]

# Tenants with the plans a test needs, made by the operator in one go (one
# process, not a dozen manage.py runs): name -> set_plan's changes.
TENANT_PLANS: dict[str, dict] = {
    "limited": {"rpm": 1, "tpm": None},
    "broke": {"budget_tokens": 1},
    "capped": {"max_priority": "normal"},
    "leaver": {"budget_tokens": 1_000_000},
}
_MAKE_TENANTS = """
import json
from apps.tenants.services import change_tenant_plan, create_tenant, issue_api_key
keys = {}
for slug, plan in json.loads(%r).items():
    tenant = create_tenant(slug, slug)
    change_tenant_plan(tenant, plan)
    keys[slug] = issue_api_key(tenant, name="sdk").secret
print(json.dumps(keys))
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with isolated_platform_env(tmp_path_factory.mktemp("openai-sdk")) as env:
        running = Platform(env)
        try:
            running.wait_ready()
            running.api_key = running.read_seed()["API_KEY"]
            # Slow enough that a client leaves mid-generation: 10 s for the whole prompt.
            add_echo_model(env, "echo-crawl", 4)
            running.keys = json.loads(manage(env, "shell", "-v", "0", "-c", _MAKE_TENANTS % json.dumps(TENANT_PLANS)))
            yield running
        finally:
            running.stop()


def sdk(platform, key: str | None = None) -> openai.OpenAI:
    # No retries: each refusal must reach the test as the SDK raises it.
    return openai.OpenAI(
        base_url=f"{platform.base_url}/v1", api_key=key or platform.api_key, max_retries=0, timeout=60
    )


def recorded(platform, task_id: str, key: str | None = None) -> dict:
    """The task behind a completion, as GET /api/v1/tasks/{id} shows it once it has ended."""
    headers = {"Authorization": f"Bearer {key or platform.api_key}"}
    with httpx.Client(base_url=platform.base_url, headers=headers, timeout=10) as client:
        return wait_finished(client, task_id)


def usage_of(usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def test_the_model_list(platform):
    client = sdk(platform)

    assert {model.id for model in client.models.list()} >= {"echo", "tiny", "echo-crawl"}
    assert client.models.retrieve("tiny").id == "tiny"


def test_a_chat_completion_on_the_tiny_model(platform):
    raw = sdk(platform).chat.completions.with_raw_response.create(
        model="tiny", messages=MESSAGES, max_completion_tokens=8, seed=1, temperature=0
    )
    completion = raw.parse()

    assert raw.headers["x-task-id"] == completion.id
    task = recorded(platform, completion.id)
    assert task["status"] == "succeeded"
    assert task["model"] == "tiny"
    assert completion.choices[0].message.content == task["output"]
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert usage_of(completion.usage) == task["usage"]
    assert 0 < completion.usage.completion_tokens <= 8


def test_a_streamed_chat_completion_on_the_tiny_model(platform):
    stream = sdk(platform).chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, seed=1, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    task = recorded(platform, chunks[0].id)
    assert {chunk.id for chunk in chunks} == {task["id"]}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == task["output"]
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == []
    assert usage_of(chunks[-1].usage) == task["usage"]


def test_a_completion_whole_and_streamed(platform):
    client = sdk(platform)
    completion = client.completions.create(model="echo", prompt="the quick brown fox", max_tokens=3)
    chunks = list(client.completions.create(model="echo", prompt="the quick brown fox", stream=True))

    assert completion.choices[0].text == "the quick brown "
    assert completion.choices[0].finish_reason == "length"
    assert usage_of(completion.usage) == recorded(platform, completion.id)["usage"]
    assert "".join(chunk.choices[0].text for chunk in chunks) == "the quick brown fox"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert recorded(platform, chunks[0].id)["status"] == "succeeded"


def test_a_wrong_key_is_an_authentication_error(platform):
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk(platform, "lla_not_a_real_key").chat.completions.create(model="echo", messages=MESSAGES)

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_over_the_rate_limit_is_a_rate_limit_error_with_retry_after(platform):
    client = sdk(platform, platform.keys["limited"])
    client.completions.create(model="echo", prompt="one", max_tokens=1)

    with pytest.raises(openai.RateLimitError) as raised:
        client.completions.create(model="echo", prompt="two", max_tokens=1)

    assert raised.value.status_code == 429
    assert int(raised.value.response.headers["retry-after"]) > 0


def test_over_the_budget_is_a_402_budget_exceeded(platform):
    with pytest.raises(openai.APIStatusError) as raised:
        sdk(platform, platform.keys["broke"]).chat.completions.create(model="echo", messages=MESSAGES)

    assert raised.value.status_code == 402
    assert raised.value.code == "budget_exceeded"


def test_n_above_one_is_a_bad_request_naming_n(platform):
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(platform).chat.completions.create(model="echo", messages=MESSAGES, n=2)

    assert raised.value.param == "n"
    assert raised.value.code == "unsupported_value"


def test_service_tier_and_x_priority_pick_the_class_within_the_plans_cap(platform):
    client = sdk(platform)
    flex = client.chat.completions.create(model="echo", messages=MESSAGES, service_tier="flex")
    header = client.chat.completions.create(
        model="echo", messages=MESSAGES, extra_headers={"X-Priority": "interactive"}
    )

    assert flex.service_tier == "flex"
    assert recorded(platform, flex.id)["priority"] == "batch"
    assert header.service_tier == "priority"
    assert recorded(platform, header.id)["priority"] == "interactive"

    capped = sdk(platform, platform.keys["capped"])
    with pytest.raises(openai.PermissionDeniedError) as raised:
        capped.chat.completions.create(model="echo", messages=MESSAGES, service_tier="priority")
    assert (raised.value.code, raised.value.param) == ("priority_not_allowed", "service_tier")
    allowed = capped.chat.completions.create(model="echo", messages=MESSAGES, service_tier="default")
    assert recorded(platform, allowed.id, platform.keys["capped"])["priority"] == "normal"


def test_leaving_mid_stream_stops_the_generation_and_charges_what_was_produced(platform):
    key = platform.keys["leaver"]
    stream = sdk(platform, key).chat.completions.create(
        model="echo-crawl", messages=[{"role": "user", "content": CRAWL_PROMPT}], max_tokens=CRAWL_WORDS,
        stream=True,
    )
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received.split()) >= 2:
            break
    stream.close()  # the client goes away mid-generation

    task = recorded(platform, chunk.id, key)
    assert task["status"] == "cancelled"
    produced = task["usage"]["completion_tokens"]
    assert 2 <= produced < CRAWL_WORDS  # it stopped, long before the end
    assert task["output"].startswith(received)
    assert len(task["output"].split()) == produced
    assert _settled_spend(platform, key) == task["usage"]["total_tokens"]


def _settled_spend(platform, key: str) -> int:
    """The tenant's spent tokens once nothing is reserved any more."""
    deadline = time.monotonic() + 30  # a guard against a hung test, not a measurement
    with httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        while True:
            usage = client.get("/api/v1/usage").json()
            if usage["reserved_tokens"] == 0:
                return usage["spent_tokens"]
            assert time.monotonic() < deadline, usage
            time.sleep(0.2)
