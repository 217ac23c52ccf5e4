"""Transformers adapter: a local causal LM, generated one token at a time.

adapter_config:
- ``path`` (required): a local model directory as written by
  ``save_pretrained`` (config.json, safetensors weights, tokenizer files).
- ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (default: CUDA when torch
  sees a GPU). The platform's ``load(device)`` call has the last word.

Generation is a manual decoding loop over the model's key/value cache rather
than ``model.generate``: one forward pass per token, so ``max_tokens`` and
``cancel`` take effect at the exact next token and every token is counted.
Text is decoded incrementally (a token that ends inside a multi-byte
character waits for the next one) and cut before the first stop sequence;
no part of a stop sequence is ever yielded.

Loading is strictly local and safe: ``local_files_only=True`` (no hub
look-ups, as with HF_HUB_OFFLINE=1), ``trust_remote_code=False`` (a model
directory cannot run its own Python) and ``use_safetensors=True`` (no
pickled weights).

torch and transformers are imported only inside ``resources``/``load``, so
importing the plugin at start-up costs nothing. ``count_prompt_tokens`` (the
API process reserves a task's budget by it) reads the tokenizer alone, on
first use, without torch.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.catalog.adapters import (
    AdapterConfigError,
    AdapterError,
    ChatMessage,
    GenerationRequest,
    ModelAdapter,
    ResourceNeeds,
    TextChunk,
    TokenStream,
    Usage,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda", "auto")
# Resident GPU memory is the weights plus room for activations and the KV cache.
GPU_MEMORY_OVERHEAD = 1.2
GPU_BYTES_PER_PARAMETER = 2  # weights are loaded as bfloat16 or float16 on a GPU


@dataclass(frozen=True)
class _LoadedModel:
    """Everything a stream needs; replaced whole, so a stream keeps its own reference."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers tokenizer
    device: torch.device
    end_token_ids: frozenset[int]
    context_length: int | None


@dataclass(frozen=True)
class _Sampling:
    temperature: float  # 0: greedy
    top_p: float

    @classmethod
    def from_request(cls, request: GenerationRequest) -> _Sampling:
        temperature = 0.0 if request.temperature is None else float(request.temperature)
        top_p = 1.0 if request.top_p is None else float(request.top_p)
        if not math.isfinite(temperature) or temperature < 0:
            raise AdapterError("temperature must be a number >= 0", permanent=True)
        if not 0.0 <= top_p <= 1.0:
            raise AdapterError("top_p must be between 0 and 1", permanent=True)
        return cls(temperature, top_p)


class TransformersAdapter(ModelAdapter):
    name = "transformers"

    def __init__(self, config: dict[str, Any], plugin_settings: dict[str, Any]) -> None:
        super().__init__(config, plugin_settings)
        raw_path = config.get("path")
        if not isinstance(raw_path, str) or not raw_path.strip():
            raise AdapterConfigError("path", "required: the model's local directory")
        self._path = Path(raw_path).expanduser()
        if not self._path.is_dir():
            raise AdapterConfigError("path", f"{raw_path} is not a directory on this worker")
        self._device_choice = config.get("device", "auto")
        if self._device_choice not in DEVICES:
            raise AdapterConfigError("device", f"must be one of {', '.join(DEVICES)}")
        threads = plugin_settings.get("cpu_threads", 0)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
            raise AdapterConfigError("cpu_threads", "plugin setting: must be an integer >= 0")
        self._cpu_threads = threads
        self._loaded: _LoadedModel | None = None
        # Forward passes of one model run one at a time. On a CPU, concurrent
        # passes would only fight over the same cores (torch already spreads
        # one pass over them), and on a GPU they share one stream anyway. The
        # lock is taken per token, not per request, so concurrent requests
        # interleave token by token and a long generation never blocks a
        # short one for its whole length.
        self._forward_lock = threading.Lock()
        # Prompt encoding: a fast tokenizer's Rust object refuses concurrent
        # use while transformers adjusts its truncation settings per call.
        self._encode_lock = threading.Lock()
        self._cancel_lock = threading.Lock()
        # Counting prompts in the API process (count_prompt_tokens): the
        # tokenizer alone, loaded on first use, once (a failure too).
        self._counting_lock = threading.Lock()
        self._counting_tokenizer: Any = None
        self._counting_tried = False
        self._cancelled: set[str] = set()

    # --- placement -------------------------------------------------------------------

    def resources(self) -> ResourceNeeds:
        if self._target_device() != "cuda":
            return ResourceNeeds(device="cpu")
        loaded = self._loaded
        if loaded is not None and loaded.device.type == "cuda":
            weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        else:
            weight_bytes = _safetensors_parameter_count(self._path) * GPU_BYTES_PER_PARAMETER
        return ResourceNeeds(device="gpu", gpu_memory_bytes=int(weight_bytes * GPU_MEMORY_OVERHEAD))

    def _target_device(self) -> str:
        if self._device_choice != "auto":
            return self._device_choice
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def load(self, device: str = "cpu") -> None:
        """Load tokenizer and weights onto ``device`` ("cpu", "gpu" or a torch device name)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            target = torch.device("cuda" if device == "gpu" else device)
        except RuntimeError:
            raise AdapterConfigError("device", f"{device!r} is not a device this adapter can load onto") from None
        if target.type not in ("cpu", "cuda"):
            raise AdapterConfigError("device", f"{device!r} is not a device this adapter can load onto")
        if target.type == "cuda":
            if not torch.cuda.is_available():
                raise AdapterConfigError("device", "a GPU was asked for but torch sees no CUDA device here")
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32  # half precision on CPU is slow and lossy
            if self._cpu_threads:
                torch.set_num_threads(self._cpu_threads)
        local = {"local_files_only": True, "trust_remote_code": False}
        try:
            tokenizer = AutoTokenizer.from_pretrained(self._path, **local)
            model = AutoModelForCausalLM.from_pretrained(self._path, dtype=dtype, use_safetensors=True, **local)
        except Exception as exc:  # whatever the cause, this directory cannot be served
            raise AdapterConfigError("path", f"cannot load a model from {self._path}: {exc}") from exc
        # PreTrainedModel.to is @wraps(torch.nn.Module.to): typed as that unbound function,
        # its first parameter reads as self, though at run time the device goes there.
        model.to(target).eval()  # type: ignore[arg-type]
        self._loaded = _LoadedModel(
            model=model,
            tokenizer=tokenizer,
            device=target,
            end_token_ids=_end_token_ids(model, tokenizer),
            context_length=getattr(model.config, "max_position_embeddings", None),
        )

    def unload(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is not None and loaded.device.type == "cuda":
            import torch

            del loaded  # streams still running hold their own reference and finish first
            torch.cuda.empty_cache()

    def health(self) -> bool:
        return self._loaded is not None

    # --- generation ------------------------------------------------------------------

    def cancel(self, request_id: str) -> None:
        with self._cancel_lock:
            self._cancelled.add(request_id)

    def _is_cancelled(self, request_id: str) -> bool:
        with self._cancel_lock:
            return request_id in self._cancelled

    def stream(self, request: GenerationRequest) -> TokenStream:
        # A generator throughout: every error, validation included, is raised
        # while the caller iterates, where the platform handles adapter errors.
        try:
            loaded = self._loaded
            if loaded is None:
                raise AdapterError("the model is not loaded on this worker")
            if request.max_tokens < 1:
                raise AdapterError("max_tokens must be at least 1", permanent=True)
            sampling = _Sampling.from_request(request)
            prompt_ids = self._prompt_ids(loaded, request)
            budget = request.max_tokens
            if loaded.context_length:
                room = loaded.context_length - len(prompt_ids)
                if room < 1:
                    raise AdapterError(
                        f"the prompt is {len(prompt_ids)} tokens; this model's context is "
                        f"{loaded.context_length} tokens",
                        permanent=True,
                    )
                budget = min(budget, room)  # generation ends at the end of the context, as at max_tokens
            yield from self._generate(loaded, request, prompt_ids, budget, sampling)
        finally:
            with self._cancel_lock:
                self._cancelled.discard(request.request_id)

    def _prompt_ids(self, loaded: _LoadedModel, request: GenerationRequest) -> list[int]:
        with self._encode_lock:
            ids = _encode(loaded.tokenizer, request.prompt, request.messages)
        if not ids:
            raise AdapterError("the prompt is empty", permanent=True)
        return ids

    # --- counting (API process) ------------------------------------------------------

    def count_prompt_tokens(self, prompt: str | None, messages: Sequence[ChatMessage] | None) -> int | None:
        """The prompt's ids, counted as ``stream`` counts them: the same tokenizer
        files and chat template. None when the tokenizer cannot be read here or the
        messages do not fit the template (the task then fails when it runs)."""
        loaded = self._loaded  # a worker that serves the model has the tokenizer already
        tokenizer = loaded.tokenizer if loaded is not None else self._tokenizer_for_counting()
        if tokenizer is None:
            return None
        try:
            with self._encode_lock:
                return len(_encode(tokenizer, prompt, messages))
        except AdapterError:
            return None

    def _tokenizer_for_counting(self) -> Any:
        with self._counting_lock:  # concurrent first requests wait for one load
            if not self._counting_tried:
                self._counting_tried = True
                # PreTrainedTokenizerFast rather than AutoTokenizer: AutoTokenizer
                # imports torch (~300 MB and seconds per API process); this reads
                # the same tokenizer.json, special tokens and chat template without
                # it. A model whose tokenizer class adds its special tokens in code
                # rather than in tokenizer.json may count one or two tokens off;
                # the charge is the worker's count either way.
                from transformers import PreTrainedTokenizerFast

                try:
                    self._counting_tokenizer = PreTrainedTokenizerFast.from_pretrained(
                        self._path, local_files_only=True, trust_remote_code=False
                    )
                except Exception as exc:  # whatever the files' fault, admission falls back to its estimate
                    logger.warning("cannot read the tokenizer in %s to count prompts: %s", self._path, exc)
            return self._counting_tokenizer

    def _generate(
        self,
        loaded: _LoadedModel,
        request: GenerationRequest,
        prompt_ids: list[int],
        budget: int,
        sampling: _Sampling,
    ) -> Iterator[TextChunk | Usage]:
        import torch

        generator = torch.Generator(device=loaded.device)
        if request.seed is not None:
            generator.manual_seed(request.seed)
        else:
            generator.seed()  # a fresh random seed per request
        decoder = _IncrementalDecoder(loaded.tokenizer)
        stops = _StopCutter(request.stop)
        next_input = torch.tensor([prompt_ids], device=loaded.device)
        cache = None
        generated = 0
        while generated < budget and not self._is_cancelled(request.request_id):
            with self._forward_lock, torch.inference_mode():
                # The cache argument was `past_key_values` before transformers 5.24.
                output = loaded.model(input_ids=next_input, cache=cache, use_cache=True, logits_to_keep=1)
            cache = output.cache
            token = _pick_token(output.logits[0, -1], sampling, generator)
            generated += 1
            if token in loaded.end_token_ids:
                break
            text = stops.feed(decoder.push(token))
            if text:
                yield TextChunk(text)
            if stops.stopped:
                break
            next_input = torch.tensor([[token]], device=loaded.device)
        if not stops.stopped:
            # Ended by the budget, an end token or a cancel: what was held
            # back (an unfinished character, a possible stop's first part) is output.
            text = stops.feed(decoder.flush())
            text += stops.flush()
            if text:
                yield TextChunk(text)
        yield Usage(prompt_tokens=len(prompt_ids), completion_tokens=generated)


def _encode(tokenizer: Any, prompt: str | None, messages: Sequence[ChatMessage] | None) -> list[int]:
    """The prompt's token ids: the prompt with the tokenizer's special tokens, or the
    messages through the chat template (call it under the adapter's encode lock)."""
    if prompt is not None:
        return list(tokenizer(prompt).input_ids)
    if not messages:
        raise AdapterError("the request has neither a prompt nor messages", permanent=True)
    if not tokenizer.chat_template:
        raise AdapterError("this model has no chat template: send a prompt, not messages", permanent=True)
    turns = [{"role": m.role, "content": m.content} for m in messages]
    try:
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # a template may reject a role order (e.g. two system turns)
        raise AdapterError(f"the messages do not fit this model's chat template: {exc}", permanent=True) from exc
    # The template already wrote the special tokens (<s> and the turn markers).
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def _pick_token(logits: torch.Tensor, sampling: _Sampling, generator: torch.Generator) -> int:
    """Greedy at temperature 0, else nucleus sampling from ``generator`` (per request, so seeds reproduce)."""
    import torch

    with torch.inference_mode():
        if sampling.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
        if sampling.top_p >= 1.0:
            return int(torch.multinomial(probs, 1, generator=generator))
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest set of most likely tokens whose mass reaches top_p;
        # the most likely token always stays (top_p=0 means greedy).
        outside = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) >= sampling.top_p
        outside[0] = False
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])


def _end_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Tokens that end a generation: the generation config's EOS ids and the tokenizer's."""
    ids: set[int] = set()
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return frozenset(ids)


class _IncrementalDecoder:
    """Token ids in, new text out, as soon as it is complete.

    Decoding a token alone is wrong for byte-level and sentencepiece
    tokenizers (a character may span tokens; spaces depend on neighbours),
    and decoding everything every step costs O(n²). So, as text-generation
    servers do, it decodes a short window twice — with and without the
    newest tokens — and emits the difference, holding back text that ends in
    an unfinished character (U+FFFD).
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._window: list[int] = []  # ids since the last emitted boundary, plus context before it
        self._emitted = 0  # how many ids of the window are already emitted as text

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        self._window.append(token_id)
        before = self._decode(self._window[: self._emitted])
        after = self._decode(self._window)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._window = self._window[self._emitted:]  # the last emitted run stays as context
        self._emitted = len(self._window)
        return after[len(before):]

    def flush(self) -> str:
        before = self._decode(self._window[: self._emitted])
        rest = self._decode(self._window)[len(before):]
        self._window, self._emitted = [], 0
        return rest


class _StopCutter:
    """Cuts streamed text before the first stop sequence.

    Text that might be the beginning of a stop sequence is held back until
    the following text settles it, so no part of a stop is ever yielded.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return the part that is now safe to yield."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        self._held += text
        positions = [p for p in (self._held.find(stop) for stop in self._stops) if p >= 0]
        if positions:
            self.stopped = True
            safe, self._held = self._held[: min(positions)], ""
            return safe
        keep = self._possible_stop_start(self._held)
        safe, self._held = self._held[: len(self._held) - keep], self._held[len(self._held) - keep:]
        return safe

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _possible_stop_start(self, text: str) -> int:
        """Length of the longest end of ``text`` that a stop sequence begins with."""
        return max(
            (size for stop in self._stops for size in range(1, min(len(stop), len(text) + 1))
             if text.endswith(stop[:size])),
            default=0,
        )


def _safetensors_parameter_count(directory: Path) -> int:
    """Parameters in a directory's safetensors files, read from their headers only (no torch, no weights)."""
    total = 0
    for file in sorted(directory.glob("*.safetensors")):
        try:
            with file.open("rb") as handle:
                (header_size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(header_size))
        except (OSError, struct.error, ValueError) as exc:
            raise AdapterConfigError("path", f"{file.name} is not a readable safetensors file: {exc}") from exc
        total += sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    if not total:
        raise AdapterConfigError("path", f"{directory} holds no safetensors weights")
    return total
