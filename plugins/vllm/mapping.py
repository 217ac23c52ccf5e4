"""The vllm adapter's pure translations, free of vLLM and of threads.

Platform request → what ``AsyncLLM.generate`` takes (SamplingParams keywords,
a priority int, the LoRA to apply, the prompt text), and vLLM's streamed
``RequestOutput`` objects → text deltas and one final Usage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from apps.catalog.adapters import GenerationRequest, Usage

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
    decoding (vLLM resets it), so it is passed only when sampling.
    """
    greedy = not request.temperature
    kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": 0.0 if greedy else request.temperature}
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
    """What one DELTA-mode RequestOutput adds: new text and the number of new tokens."""

    text: str
    new_tokens: int
    prompt_tokens: int | None
    finished: bool
    finish_reason: str | None


def delta_of(output: Any) -> Delta:
    """Read one ``RequestOutput`` produced with ``RequestOutputKind.DELTA``.

    Under DELTA each output carries only what is new since the previous one
    (vLLM merges several into one when the consumer falls behind, still as a
    delta), so its token ids are counted, never diffed. An abort yields a last
    output with no new tokens and finish_reason "abort".
    """
    completion = output.outputs[0] if output.outputs else None
    prompt_ids = output.prompt_token_ids
    return Delta(
        text=completion.text if completion is not None else "",
        new_tokens=len(completion.token_ids) if completion is not None else 0,
        prompt_tokens=len(prompt_ids) if prompt_ids is not None else None,
        finished=bool(output.finished),
        finish_reason=completion.finish_reason if completion is not None else None,
    )


class UsageCounter:
    """Tokens counted over one request's deltas (one instance per request)."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason: str | None = None

    def add(self, delta: Delta) -> str:
        """Count ``delta`` and return its text."""
        if delta.prompt_tokens is not None:
            self.prompt_tokens = delta.prompt_tokens  # the same on every output of a request
        self.completion_tokens += delta.new_tokens
        if delta.finished:
            self.finish_reason = delta.finish_reason
        return delta.text

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)
