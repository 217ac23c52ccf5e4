"""The language a prompt is written in, for routed models' ``languages`` rules.

py3langid ships its model inside the package (nothing is downloaded at run
time); the model is read on the first call in a process. Only the user's
text is looked at: a system message says how to answer, not what is asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import py3langid

# Enough text to tell a language; the rest of a long prompt adds time, not certainty.
MAX_CHARS = 2000


def prompt_text(prompt: str | None, messages: Sequence[dict[str, str]] | None) -> str:
    if prompt is not None:
        return prompt
    users = [message["content"] for message in messages or () if message.get("role") == "user"]
    return "\n".join(users or [message["content"] for message in messages or ()])


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language, None for text with no letters to judge."""
    sample = text[:MAX_CHARS]
    if not any(character.isalpha() for character in sample):
        return None
    code, _score = py3langid.classify(sample)
    return str(code)
