"""The vllm adapter's pure translations, free of vLLM and of threads.

Platform request → what ``AsyncLLM.generate`` takes (SamplingParams keywords,
a priority int, the LoRA to apply, the prompt text), and vLLM's streamed
``RequestOutput`` objects → text deltas and one final Usage. Suspend and
resume: the checkpoint a suspended request leaves, the prompt token ids and
token budget of the request that resumes it, and the text held across the
suspension point (``ResumedText``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from apps.catalog.adapters import GenerationRequest, Resume, Usage

# vLLM's "priority" scheduling policy handles LOWER values first (ties by
# arrival); Huey runs HIGHER values first. So the order here is the reverse of
# the platform's Huey mapping, on purpose.
VLLM_PRIORITY: Mapping[str, int] = {"interactive": 0, "normal": 1, "batch": 2}
DEFAULT_PRIORITY_CLASS = "normal"


def vllm_priority(priority_class: str) -> int:
    """vLLM's priority for a platform class; an unknown class runs as "normal".

    The API validates classes before a task exists, so an unknown one can only
    come from an older or newer platform; like the Huey dispatch, it is served
    at the default class rather than failing the task.
    """
    return VLLM_PRIORITY.get(priority_class, VLLM_PRIORITY[DEFAULT_PRIORITY_CLASS])


def sampling_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """Keywords for ``vllm.SamplingParams``, without ``output_kind`` (the adapter's to set).

    No temperature (None) or 0 means greedy decoding: vLLM's own default is 1.0,
    but the platform retries failed attempts and a greedy default makes a retry
    produce what the first attempt would have. top_p is meaningless under greedy
    decoding (vLLM resets it), so it is passed only when sampling. A resumed
    request gets the same parameters with what is left of ``max_tokens``.
    """
    greedy = not request.temperature
    temperature = 0.0 if greedy else request.temperature
    kwargs: dict[str, Any] = {"max_tokens": remaining_tokens(request), "temperature": temperature}
    if not greedy and request.top_p is not None:
        kwargs["top_p"] = request.top_p
    if request.seed is not None:
        kwargs["seed"] = request.seed
    stops = [stop for stop in request.stop if stop]
    if stops:
        # vLLM leaves the stop text out of the output (include_stop_str_in_output
        # is False by default), as the platform's contract asks.
        kwargs["stop"] = stops
    return kwargs


@dataclass(frozen=True)
class LoraModule:
    """One LoRA adapter the engine may apply: ``LoRARequest(name, int_id, path)``."""

    name: str
    int_id: int
    path: str


def lora_modules(paths_by_name: Mapping[str, str]) -> dict[str, LoraModule]:
    """Number the configured LoRA adapters 1, 2, … in name order.

    vLLM requires ``lora_int_id`` > 0 and unique per adapter within an engine;
    each adapter instance owns its engine, so numbering by sorted name is
    unique and stable across restarts (the same name keeps the same id).
    """
    return {
        name: LoraModule(name=name, int_id=index, path=paths_by_name[name])
        for index, name in enumerate(sorted(paths_by_name), start=1)
    }


def select_lora(modules: Mapping[str, LoraModule], default_name: str | None) -> LoraModule | None:
    """The LoRA every request of this model uses, or None for the base weights.

    GenerationRequest carries no per-request metadata, so the choice is the
    model's: its adapter_config names a default ("lora"); a model version that
    wants another LoRA is another model version.
    """
    if default_name is None:
        return None
    try:
        return modules[default_name]
    except KeyError:
        raise ValueError(f"LoRA {default_name!r} is not among the configured lora_modules") from None


def prompt_text(request: GenerationRequest, apply_chat_template: Callable[..., Any] | None) -> str:
    """The text handed to the engine: the raw prompt, or the messages in the model's chat template.

    ``apply_chat_template`` is the tokenizer's method of that name. ValueError
    means this model cannot serve the request as given (a permanent error).
    """
    if request.prompt is not None:
        return request.prompt
    if not request.messages:
        raise ValueError("the request has neither a prompt nor messages")
    if apply_chat_template is None:
        raise ValueError("this model's tokenizer cannot format chat messages")
    try:
        text = apply_chat_template(
            [{"role": message.role, "content": message.content} for message in request.messages],
            tokenize=False,
            add_generation_prompt=True,
        )
    except Exception as exc:
        # No template (ValueError) or a template that rejects these messages
        # (jinja's TemplateError, e.g. "roles must alternate"): the same
        # messages fail the same way on every attempt.
        raise ValueError(f"the model's chat template cannot format these messages: {exc}") from exc
    if not isinstance(text, str):
        raise ValueError("this model's chat template did not produce text")
    return text


@dataclass(frozen=True)
class Delta:
    """What one DELTA-mode RequestOutput adds: new text and the new tokens' ids."""

    text: str
    token_ids: Sequence[int]
    # The request's prompt as vLLM tokenized it (the same list on every output; not copied).
    prompt_token_ids: Sequence[int] | None
    finished: bool
    finish_reason: str | None

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)


def delta_of(output: Any) -> Delta:
    """Read one ``RequestOutput`` produced with ``RequestOutputKind.DELTA``.

    Under DELTA each output carries only what is new since the previous one
    (vLLM merges several into one when the consumer falls behind, still as a
    delta), so its token ids are collected, never diffed. An abort yields a
    last output with finish_reason "abort": no new tokens, and the text vLLM
    was holding back (see ``ResumedText``), if any.
    """
    completion = output.outputs[0] if output.outputs else None
    return Delta(
        text=completion.text if completion is not None else "",
        token_ids=list(completion.token_ids) if completion is not None else [],
        prompt_token_ids=output.prompt_token_ids,
        finished=bool(output.finished),
        finish_reason=completion.finish_reason if completion is not None else None,
    )


# -- suspend and resume ----------------------------------------------------------
#
# vLLM cannot pause a request and keep it: a suspension aborts it (its last
# output is the abort's), and resuming is a NEW request whose prompt is the
# original prompt's token ids followed by every token generated so far, with
# the same sampling parameters and what is left of max_tokens. vLLM's prefix
# cache (on by default in the V1 engine) still holds the KV blocks of the
# aborted request, so the new prefill is mostly cache hits; the checkpoint
# holds only token ids and text, never engine state, so a generation may also
# resume on another worker (a full prefill there).
#
# Greedy decoding resumes to the text the uninterrupted request would have
# produced (up to vLLM's own run-to-run numerics, which already differ with
# batch composition). Seeded sampling does NOT: vLLM seeds a generator per
# request, so the resumed request's draws restart from the seed rather than
# continuing the first request's sequence. A resumed seeded generation is
# still reproducible given the same suspension points, and is a valid sample,
# but not the one an uninterrupted run would give.

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint read back: where a suspended request stopped.

    ``prompt_token_ids``: the original prompt as vLLM tokenized it; None when
    the request was suspended before the engine produced anything (the resumed
    request then starts from the prompt text). ``token_ids``: every token
    generated so far. ``held_text``: text of those tokens that was generated
    but not streamed yet (see ``ResumedText``).
    """

    prompt_token_ids: tuple[int, ...] | None
    token_ids: tuple[int, ...]
    held_text: str


def checkpoint(prompt_token_ids: Sequence[int] | None, token_ids: Sequence[int], held_text: str) -> dict[str, Any]:
    """The JSON-safe checkpoint of a suspended request (the platform stores it encrypted)."""
    if prompt_token_ids is None and token_ids:
        raise ValueError("generated tokens without the prompt they continue")
    return {
        "version": CHECKPOINT_VERSION,
        "prompt_token_ids": None if prompt_token_ids is None else [int(i) for i in prompt_token_ids],
        "token_ids": [int(i) for i in token_ids],
        "held_text": held_text,
    }


def resume_point(resume: Resume) -> ResumePoint:
    """Read a checkpoint that ``checkpoint`` wrote; ValueError when it is not one.

    A checkpoint that does not read back cannot be resumed by any attempt, so
    the adapter fails the request permanently on it.
    """
    data = resume.checkpoint
    if not isinstance(data, Mapping) or data.get("version") != CHECKPOINT_VERSION:
        raise ValueError("the checkpoint is not one this vllm adapter wrote")
    prompt_ids, token_ids, held_text = data.get("prompt_token_ids"), data.get("token_ids"), data.get("held_text")
    if prompt_ids is not None and not _token_ids(prompt_ids):
        raise ValueError("the checkpoint's prompt_token_ids are not token ids")
    if not _token_ids(token_ids) or not isinstance(held_text, str):
        raise ValueError("the checkpoint's token_ids or held_text are malformed")
    if prompt_ids is None and token_ids:
        raise ValueError("the checkpoint has generated tokens but no prompt")
    if len(token_ids) != resume.completion_tokens:
        raise ValueError(
            f"the checkpoint holds {len(token_ids)} generated tokens, the resume says {resume.completion_tokens}"
        )
    return ResumePoint(
        prompt_token_ids=None if prompt_ids is None else tuple(prompt_ids),
        token_ids=tuple(token_ids),
        held_text=held_text,
    )


def _token_ids(value: Any) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)


def resumed_prompt_token_ids(point: ResumePoint) -> list[int] | None:
    """The prompt of the request that resumes ``point``: the original prompt's ids, then
    every generated id (``vllm.TokensPrompt(prompt_token_ids=...)``); None: use the prompt text."""
    if point.prompt_token_ids is None:
        return None
    return [*point.prompt_token_ids, *point.token_ids]


def remaining_tokens(request: GenerationRequest) -> int:
    """``max_tokens`` left for this segment: the whole generation's, less what earlier segments made."""
    done = request.resume.completion_tokens if request.resume is not None else 0
    return max(request.max_tokens - done, 0)


class UsageCounter:
    """Tokens counted over one generation's deltas (one instance per stream).

    Given the ``ResumePoint`` a stream resumes, it goes on counting from there:
    the prompt is the ORIGINAL one (the resumed request's own prompt also holds
    the generated tokens, which are completion tokens, counted once), and the
    completion tokens are those of every segment, so the task is charged once.
    It also collects the token ids a further suspension's checkpoint needs.
    """

    def __init__(self, resumed: ResumePoint | None = None) -> None:
        self.prompt_token_ids: Sequence[int] | None = resumed.prompt_token_ids if resumed is not None else None
        self.token_ids: list[int] = list(resumed.token_ids) if resumed is not None else []
        self.finish_reason: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_token_ids) if self.prompt_token_ids is not None else 0

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    def add(self, delta: Delta) -> str:
        """Count ``delta`` and return its text."""
        if self.prompt_token_ids is None and delta.prompt_token_ids is not None:
            self.prompt_token_ids = delta.prompt_token_ids  # the same on every output of a request
        self.token_ids.extend(delta.token_ids)
        if delta.finished:
            self.finish_reason = delta.finish_reason
        return delta.text

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)

    def checkpoint(self, held_text: str) -> dict[str, Any]:
        return checkpoint(self.prompt_token_ids, self.token_ids, held_text)


class ResumedText:
    """The text a resumed stream yields: the text held at the suspension, then the new text.

    With stop strings, vLLM holds back the last (longest stop - 1) characters
    of the text (they may be the start of a stop string) until more text shows
    they are not, or the request finishes. An abort finishes it, so a
    suspension's last output releases them; the adapter keeps them in the
    checkpoint (``held_text``) instead of streaming them, because the resumed
    request's detokenizer looks for stop strings only in its OWN text: a stop
    string that begins in the held text and ends in the new text is this
    class's to find. Until it can tell (enough new text, or the end), it holds
    the new text back too. ``stopped``: one was found; the stream ends with
    the text before it, as the uninterrupted request would have.

    Without a held text (no stop strings, or nothing held) it passes text through.
    """

    def __init__(self, held_text: str, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._held = held_text
        self._boundary = len(held_text)  # a stop that starts before this straddles the suspension point
        lookahead = max((len(stop) for stop in self._stops), default=1) - 1
        self._decided_at = self._boundary + lookahead  # held text this long: every such stop is complete
        self._open = bool(held_text)
        self.stopped = False

    def add(self, text: str) -> str:
        """The text to stream now, given the next new text."""
        if self.stopped:
            return ""
        if not self._open:
            return text
        self._held += text
        cut = _first_stop_before(self._held, self._stops, self._boundary)
        if cut is not None:
            self.stopped = True
            return self._release(cut)
        if len(self._held) >= self._decided_at:
            return self._release(len(self._held))
        return ""

    def finish(self) -> str:
        """The stream ended: what is still held is text (no stop string completed in it)."""
        if self.stopped:
            return ""
        return self._release(len(self._held))

    def take_held(self) -> str:
        """Suspended again before it could tell: the held text goes on into the next checkpoint."""
        held, self._held, self._open = self._held, "", False
        return held

    def _release(self, end: int) -> str:
        text, self._held, self._open = self._held[:end], "", False
        return text


def _first_stop_before(text: str, stops: Sequence[str], boundary: int) -> int | None:
    """Where the earliest stop string occurrence in ``text`` that starts before ``boundary`` begins."""
    starts = [index for stop in stops if 0 <= (index := text.find(stop)) < boundary]
    return min(starts, default=None)
