"""The prompt-token count admission reserves by (the model's adapter's own count,
else the characters ÷ 4 estimate), and the priority classes the plans cap and
tasks use (one vocabulary)."""

from __future__ import annotations

from apps.catalog.models import LLMModel
from apps.catalog.prompt_tokens import count_prompt_tokens
from apps.core import priorities
from apps.scheduler import policy
from apps.scheduler.admission import estimate_prompt_tokens
from apps.tenants.models import PRIORITY_CLASSES_HIGHEST_FIRST, PriorityClass

ECHO = LLMModel(name="echo", adapter="echo")
REMOTE = LLMModel(name="gpt", adapter="openai_compatible")


def test_the_echo_adapter_counts_whitespace_separated_words_as_it_reports_them():
    assert count_prompt_tokens(ECHO, None, "one  two\tthree\nfour ", None) == 4
    assert count_prompt_tokens(ECHO, None, "", None) == 0
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi now"}]
    assert count_prompt_tokens(ECHO, None, None, messages) == 5


def test_an_adapter_that_cannot_count_leaves_it_to_the_estimate():
    assert count_prompt_tokens(REMOTE, None, "abcd efgh", None) is None
    assert count_prompt_tokens(LLMModel(name="gone", adapter="no-such-adapter"), None, "abcd", None) is None


def test_the_estimate_is_characters_over_four_rounded_up():
    assert estimate_prompt_tokens("abcd", None) == 1
    assert estimate_prompt_tokens("abcde", None) == 2
    assert estimate_prompt_tokens("", None) == 0
    messages = [{"role": "system", "content": "abc"}, {"role": "user", "content": "defgh"}]
    assert estimate_prompt_tokens(None, messages) == 2  # 8 characters


def test_every_priority_vocabulary_is_the_contracts_classes_highest_first():
    contracts = ["interactive", "normal", "batch"]
    assert list(priorities.CLASSES) == contracts
    assert list(PriorityClass.values) == contracts  # plans' caps and tasks' classes (one choices class)
    assert list(PRIORITY_CLASSES_HIGHEST_FIRST) == contracts
    assert list(policy.CLASSES) == contracts
    assert [priorities.rank(name) for name in contracts] == [0, 1, 2]
