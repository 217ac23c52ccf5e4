"""The issue's own scenario: a routed model with a length rule and a language rule
sends a short English, a long English and a Chinese prompt to three different
copies of the tiny local model (random weights, a locally trained tokenizer: see
manage.py build_tiny_model), as recorded on each task. The length is counted with
the candidate's own tokenizer, and each task runs, and is charged, on its copy."""

from __future__ import annotations

import uuid

import pytest
from transformers import AutoTokenizer

from apps.catalog import services as catalog
from apps.runtime.execution import execute_task
from tests.routing_support import CHINESE, LONG_ENGLISH, SHORT_ENGLISH, TASKS, make_router, submit

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tokens(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path, local_files_only=True)
    return lambda text: len(tokenizer(text).input_ids)


@pytest.fixture
def translator(tiny_model_path, tokens) -> None:
    for name in ("tiny-short", "tiny-long", "tiny-zh"):
        catalog.create_model(name, "transformers", {"path": tiny_model_path}, is_public=True)
    short_limit = tokens(SHORT_ENGLISH)
    assert tokens(LONG_ENGLISH) > short_limit  # the rule below tells them apart
    make_router("tiny-translator", {"candidates": [
        {"model": "tiny-short", "max_prompt_tokens": short_limit, "languages": ["en"]},
        {"model": "tiny-long", "min_prompt_tokens": short_limit + 1, "languages": ["en"]},
        {"model": "tiny-zh", "languages": ["zh"]},
    ]})


@pytest.mark.parametrize(
    ("prompt", "runs_on"),
    [(SHORT_ENGLISH, "tiny-short"), (LONG_ENGLISH, "tiny-long"), (CHINESE, "tiny-zh")],
)
def test_each_prompt_runs_on_the_copy_its_rules_pick(translator, tokens, acme_api, prompt, runs_on):
    created = submit(acme_api, "tiny-translator", prompt, max_tokens=4)
    assert (created["model"], created["routed_to"]) == ("tiny-translator", runs_on)

    execute_task(uuid.UUID(created["id"]))

    shown = acme_api.get(f"{TASKS}/{created['id']}").body
    assert shown["status"] == "succeeded", shown["error"]
    assert (shown["model"], shown["routed_to"]) == ("tiny-translator", runs_on)
    assert shown["usage"]["prompt_tokens"] == tokens(prompt)  # counted and charged on the copy that ran
