"""Echo adapter: the prompt (or the last user message) back, one word per chunk.

Rate: ``words_per_second`` from the model's adapter_config, else the plugin
setting; 0 means as fast as possible. A "token" here is a whitespace-separated
word, for both prompt and completion counts.

It can be suspended between words: the checkpoint is its position (words
consumed, the text generated and how much of it was sent, which keeps a held
back possible stop sequence exact), so a resumed stream goes on as if it had
never stopped.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence

from apps.catalog.adapters import (
    AdapterConfigError,
    AdapterError,
    ChatMessage,
    GenerationRequest,
    ModelAdapter,
    Resume,
    Suspended,
    TextChunk,
    TokenStream,
    Usage,
)

_WORD = re.compile(r"\S+\s*")


class EchoAdapter(ModelAdapter):
    name = "echo"
    can_suspend = True

    def __init__(self, config, plugin_settings) -> None:
        super().__init__(config, plugin_settings)
        rate = config.get("words_per_second", plugin_settings.get("words_per_second", 0.0))
        if not isinstance(rate, (int, float)) or rate < 0:
            raise AdapterConfigError("words_per_second", "must be a number >= 0")
        self._interval = 1.0 / rate if rate else 0.0
        self._cancelled: set[str] = set()
        self._suspended: set[str] = set()
        self._lock = threading.Lock()

    def stream(self, request: GenerationRequest) -> TokenStream:
        source = _source_text(request)
        words = _WORD.findall(source)
        stops = tuple(stop for stop in request.stop if stop)
        try:
            consumed, generated, sent = _position(request.resume, len(words))
            for word in words[consumed: request.max_tokens]:
                if self._is_cancelled(request.request_id):
                    break
                if self._is_suspended(request.request_id):
                    checkpoint = {"words": consumed, "generated": generated, "sent": sent}
                    yield Suspended(checkpoint=checkpoint, completion_tokens=consumed)
                    return
                consumed += 1
                if self._interval:
                    time.sleep(self._interval)
                generated += word
                cut = _first_stop(generated, stops)
                if cut is not None:
                    generated = generated[:cut]
                    break
                # Hold back a tail that may turn out to start a stop sequence
                # (one spanning words), so no part of a stop is ever yielded.
                ready = len(generated) - _stop_prefix_length(generated, stops)
                if ready > sent:
                    yield TextChunk(generated[sent:ready])
                    sent = ready
            if len(generated) > sent:
                yield TextChunk(generated[sent:])
            yield Usage(
                prompt_tokens=_count_words(request.prompt, request.messages),
                completion_tokens=len(_WORD.findall(generated)),
            )
        finally:
            with self._lock:
                self._cancelled.discard(request.request_id)
                self._suspended.discard(request.request_id)

    def cancel(self, request_id: str) -> None:
        with self._lock:
            self._cancelled.add(request_id)

    def suspend(self, request_id: str) -> None:
        with self._lock:
            self._suspended.add(request_id)

    def count_prompt_tokens(self, prompt: str | None, messages: Sequence[ChatMessage] | None) -> int | None:
        return _count_words(prompt, messages)  # exactly what stream() reports

    def _is_cancelled(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._cancelled

    def _is_suspended(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._suspended


def _position(resume: Resume | None, word_count: int) -> tuple[int, str, int]:
    """(words consumed, text generated, characters of it sent): where a stream starts."""
    if resume is None:
        return 0, "", 0
    checkpoint = resume.checkpoint
    consumed, generated, sent = checkpoint.get("words"), checkpoint.get("generated"), checkpoint.get("sent")
    if not (
        type(consumed) is int and isinstance(generated, str) and type(sent) is int
        and 0 <= consumed <= word_count and 0 <= sent <= len(generated)
    ):
        # The checkpoint holds the tenant's text: the message names none of it.
        raise AdapterError("cannot resume: not an echo checkpoint of this prompt", permanent=True)
    return consumed, generated, sent


def _source_text(request: GenerationRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    for message in reversed(request.messages or ()):
        if message.role == "user":
            return message.content
    return ""


def _count_words(prompt: str | None, messages: Sequence[ChatMessage] | None) -> int:
    """The prompt's tokens: its words, or the words of every message's content."""
    if prompt is not None:
        return len(_WORD.findall(prompt))
    return sum(len(_WORD.findall(m.content)) for m in messages or ())


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    positions = [text.find(stop) for stop in stops if stop and stop in text]
    return min(positions) if positions else None


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that is the start of a stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
