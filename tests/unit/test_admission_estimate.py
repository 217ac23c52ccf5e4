"""The prompt-token estimate admission reserves by, and the priority classes
the plans cap (kept equal to the tasks' own)."""

from __future__ import annotations

from apps.catalog.models import LLMModel
from apps.scheduler.admission import estimate_prompt_tokens
from apps.tasks.models import Priority
from apps.tenants.models import PRIORITY_CLASSES_HIGHEST_FIRST, PriorityClass
from apps.tasks.services import PRIORITY_ORDER

ECHO = LLMModel(name="echo", adapter="echo")
REMOTE = LLMModel(name="gpt", adapter="openai_compatible")


def test_echo_counts_whitespace_separated_words_like_the_echo_adapter():
    assert estimate_prompt_tokens(ECHO, "one  two\tthree\nfour ", None) == 4
    assert estimate_prompt_tokens(ECHO, "", None) == 0
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi now"}]
    assert estimate_prompt_tokens(ECHO, None, messages) == 5


def test_other_models_count_characters_over_four_rounded_up():
    assert estimate_prompt_tokens(REMOTE, "abcd", None) == 1
    assert estimate_prompt_tokens(REMOTE, "abcde", None) == 2
    assert estimate_prompt_tokens(REMOTE, "", None) == 0
    messages = [{"role": "system", "content": "abc"}, {"role": "user", "content": "defgh"}]
    assert estimate_prompt_tokens(REMOTE, None, messages) == 2  # 8 characters


def test_plan_priority_classes_are_the_task_priority_classes_in_the_same_order():
    assert sorted(PriorityClass.values) == sorted(Priority.values)
    assert list(PRIORITY_CLASSES_HIGHEST_FIRST) == list(PRIORITY_ORDER)
