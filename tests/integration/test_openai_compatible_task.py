"""A task on a model served by a remote OpenAI-compatible API, end to end through the platform.

The remote is the stub server process (tests/stubs/openai_stub.py); everything
else is real: the REST API, admission, the worker's execute_task, the plugin
registry and the adapter's HTTP client.
"""

from __future__ import annotations

import pytest

from tests.integration.remote_support import run_task as _run
from tests.stubs.openai_stub import stub_stats

pytestmark = pytest.mark.django_db


def test_a_prompt_task_succeeds_with_the_remotes_text_and_usage(acme_api, remote_model, stub_url):
    model, remote_name = remote_model()
    done = _run(acme_api, {"model": model, "prompt": "the quick brown fox"})

    assert done["status"] == "succeeded", done
    assert done["output"] == "the quick brown fox"
    assert done["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert done["error"] is None
    assert done["attempt"] == 1
    assert stub_stats(stub_url, remote_name)["paths"] == ["/v1/completions"]


def test_a_chat_task_succeeds_and_its_settings_reach_the_remote(acme_api, remote_model, stub_url):
    model, remote_name = remote_model()
    done = _run(acme_api, {
        "model": model,
        "messages": [{"role": "system", "content": "be nice"},
                     {"role": "user", "content": "hello big world STOP never"}],
        "max_tokens": 20, "temperature": 0.3, "top_p": 0.8, "seed": 11, "stop": ["STOP"],
    })

    assert done["status"] == "succeeded", done
    assert done["output"] == "hello big world "
    assert done["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    body = stub_stats(stub_url, remote_name)["last_body"]
    assert body["messages"][-1] == {"role": "user", "content": "hello big world STOP never"}
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"], body["stop"]) == (
        20, 0.3, 0.8, 11, ["STOP"])


def test_a_transient_remote_failure_is_retried_inside_one_attempt(acme_api, remote_model, stub_url):
    model, remote_name = remote_model("fail-once-503")
    done = _run(acme_api, {"model": model, "prompt": "second time lucky"})

    assert done["status"] == "succeeded", done
    assert done["output"] == "second time lucky"
    assert done["attempt"] == 1
    assert stub_stats(stub_url, remote_name)["requests"] == 2


def test_a_rejected_request_fails_the_task_at_once_with_the_remotes_status(
        acme_api, remote_model, stub_url, monkeypatch):
    monkeypatch.setenv("LLMAGENTOS_TEST_REMOTE_KEY", "sk-integration-secret")
    model, remote_name = remote_model("always-401", api_key_env="LLMAGENTOS_TEST_REMOTE_KEY")
    done = _run(acme_api, {"model": model, "prompt": "let me in"})

    assert done["status"] == "failed", done
    assert done["error"]["code"] == "generation_failed"
    assert "401" in done["error"]["message"]  # the remote's own words: test_remote_error_body_stays_in_the_log.py
    assert "sk-integration-secret" not in str(done)
    assert done["attempt"] == 1  # permanent: no second attempt
    assert stub_stats(stub_url, remote_name)["requests"] == 1


def test_a_model_whose_key_variable_is_unset_is_unavailable(acme_api, remote_model, stub_url):
    model, remote_name = remote_model(api_key_env="LLMAGENTOS_TEST_SURELY_UNSET_KEY")
    done = _run(acme_api, {"model": model, "prompt": "anyone there"})

    assert done["status"] == "failed", done
    assert done["error"]["code"] == "model_unavailable"
    assert "api_key_env" in done["error"]["message"]
    assert stub_stats(stub_url, remote_name)["requests"] == 0
