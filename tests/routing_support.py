"""Routed models for the routing tests: echo copies as candidates (a word is a token,
so length rules are exact) and a router over them, registered as operators do."""

from __future__ import annotations

from typing import Any

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel
from apps.catalog.routing import ROUTER_ADAPTER

TASKS = "/api/v1/tasks"

SHORT_ENGLISH = "Please translate this short sentence"  # 5 words
LONG_ENGLISH = ("Please translate the following paragraph about the weather, the harvest and the market "
                "prices in the northern valley into French for our customers")
CHINESE = "请把这段话翻译成英文，谢谢你的帮助。今天的天气非常好，我们去公园散步吧。"

# Short English (at most 10 tokens), longer English, Chinese: three echo copies.
LENGTH_AND_LANGUAGE = {
    "candidates": [
        {"model": "echo-short", "max_prompt_tokens": 10, "languages": ["en"]},
        {"model": "echo-long", "min_prompt_tokens": 11, "languages": ["en"]},
        {"model": "echo-zh", "languages": ["zh"]},
    ],
}


def echo_copies(*names: str, public: bool = True, tenants: tuple[str, ...] = ()) -> list[LLMModel]:
    return [catalog.create_model(name, "echo", {}, is_public=public, tenants=tenants) for name in names]


def make_router(name: str, config: dict[str, Any], **fields: Any) -> LLMModel:
    return catalog.create_model(name, ROUTER_ADAPTER, config, is_public=True, **fields)


def submit(api, model: str, prompt: str, **body: Any) -> dict:
    created = api.post(TASKS, {"model": model, "prompt": prompt, **body})
    assert created.status == 201, created.body
    return created.body
