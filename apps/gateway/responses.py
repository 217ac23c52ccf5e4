"""A task's result in OpenAI's shapes: whole objects, stream chunks and SSE frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from apps.gateway.requests import CHAT

NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
DONE_FRAME = b"data: [DONE]\n\n"
# An SSE comment: clients ignore it; it keeps idle proxies from closing a quiet stream.
KEEP_ALIVE_FRAME = b": keep-alive\n\n"


@dataclass(frozen=True)
class Completion:
    """What every object of one completion repeats."""

    kind: str  # requests.CHAT or requests.COMPLETION
    id: str  # the task's id
    created: int  # the task's creation, in seconds since the epoch
    model: str  # as the request named it
    max_tokens: int
    service_tier: str
    include_usage: bool  # stream_options.include_usage

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.kind == CHAT else "text_completion"

    def _head(self, object_name: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "service_tier": self.service_tier,
            "system_fingerprint": None,
        }

    def _choice(self, text: str | None, finish_reason: str | None, *, delta: dict[str, Any] | None = None):
        if self.kind == CHAT:
            if delta is None:
                delta = {} if text is None else {"content": text}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk = {**self._head(self.chunk_object), "choices": choices}
        if self.include_usage:
            chunk["usage"] = None  # OpenAI's chunks say so until the last one
        return chunk

    # --- streamed ------------------------------------------------------------

    def opening_chunk(self) -> dict[str, Any] | None:
        """Chat streams open with the assistant's role; text completions have none."""
        if self.kind != CHAT:
            return None
        return self._chunk([self._choice(None, None, delta={"role": "assistant", "content": ""})])

    def text_chunk(self, text: str) -> dict[str, Any]:
        return self._chunk([self._choice(text, None)])

    def closing_chunk(self, usage: dict[str, int] | None) -> dict[str, Any]:
        return self._chunk([self._choice(None, finish_reason(usage, self.max_tokens))])

    def usage_chunk(self, usage: dict[str, int] | None) -> dict[str, Any]:
        return {**self._head(self.chunk_object), "choices": [], "usage": usage or NO_USAGE}

    # --- whole ---------------------------------------------------------------

    def whole(self, text: str, usage: dict[str, int] | None) -> dict[str, Any]:
        reason = finish_reason(usage, self.max_tokens)
        if self.kind == CHAT:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": reason,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return {**self._head(self.kind), "choices": [choice], "usage": usage or NO_USAGE}


def finish_reason(usage: dict[str, int] | None, max_tokens: int) -> str:
    """"length" when the generation used every token it was allowed, else "stop"
    (adapters report no reason of their own)."""
    if usage is not None and usage["completion_tokens"] >= max_tokens:
        return "length"
    return "stop"


def frame(data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
