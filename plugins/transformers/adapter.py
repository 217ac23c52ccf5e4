"""Transformers adapter: a local causal LM, generated one token at a time.

adapter_config:
- ``path`` (required): a local model directory as written by
  ``save_pretrained`` (config.json, safetensors weights, tokenizer files).
- ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (default: CUDA when torch
  sees a GPU). The platform's ``load(device)`` call has the last word.
- ``kv_cache_budget_bytes``: how many bytes of suspended generations' KV
  caches this model keeps in memory (default: the plugin setting of that
  name, 256 MiB; 0 keeps none). See "Suspending" below.

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

Suspending (``can_suspend``): ``suspend`` stops a stream before its next
forward pass. The checkpoint holds the generated token ids, the incremental
decoder's and the stop cutter's state and the sampling generator's state (so
seeded sampling draws on as it would have); the KV cache stays in memory, in
a least-recently-suspended store bounded by ``kv_cache_budget_bytes``, under
the checkpoint's ``cache_key``. A resume on the same adapter instance while
the cache is still kept goes on from it exactly; otherwise (evicted, another
worker, a reload) one forward pass over the prompt and the generated ids
rebuilds it. The rebuilt cache equals the kept one up to float rounding
(a batched pass sums in another order), which changes a token only at a near
tie of its two likeliest tokens: always the same on CPU in float32 in
practice, rarely not in half precision on a GPU.

torch and transformers are imported only inside ``resources``/``load``, so
importing the plugin at start-up costs nothing. ``count_prompt_tokens`` (the
API process reserves a task's budget by it) reads the tokenizer alone, on
first use, without torch.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import struct
import threading
import uuid
from collections import OrderedDict
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
    Resume,
    Suspended,
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
DEFAULT_KV_CACHE_BUDGET_BYTES = 256 * 1024 * 1024
CHECKPOINT_VERSION = 1


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
    can_suspend = True

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
        kv_budget = config.get(
            "kv_cache_budget_bytes", plugin_settings.get("kv_cache_budget_bytes", DEFAULT_KV_CACHE_BUDGET_BYTES)
        )
        if not isinstance(kv_budget, int) or isinstance(kv_budget, bool) or kv_budget < 0:
            raise AdapterConfigError(
                "kv_cache_budget_bytes", "must be an integer >= 0 (adapter_config, else the plugin setting)"
            )
        # Suspended generations' KV caches, for their resumes (see the module docstring).
        self.kv_caches = _KvCacheStore(kv_budget)
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
        self._suspended: set[str] = set()

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
        self.kv_caches.clear()  # caches of the model loaded before, if any, belong to it
        self._loaded = _LoadedModel(
            model=model,
            tokenizer=tokenizer,
            device=target,
            end_token_ids=_end_token_ids(model, tokenizer),
            context_length=getattr(model.config, "max_position_embeddings", None),
        )

    def unload(self) -> None:
        loaded, self._loaded = self._loaded, None
        self.kv_caches.clear()  # their tensors are on the model's device; resumes recompute
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

    def suspend(self, request_id: str) -> None:
        with self._cancel_lock:
            self._suspended.add(request_id)

    def _is_suspended(self, request_id: str) -> bool:
        with self._cancel_lock:
            return request_id in self._suspended

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
            # The budget counts every segment's tokens: a resumed stream has only what the earlier ones left.
            resume = _Checkpoint.of(request.resume, loaded, len(prompt_ids)) if request.resume else None
            yield from self._generate(loaded, request, prompt_ids, budget, sampling, resume)
        finally:
            with self._cancel_lock:
                self._cancelled.discard(request.request_id)
                self._suspended.discard(request.request_id)

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
        resume: _Checkpoint | None,
    ) -> Iterator[TextChunk | Usage | Suspended]:
        import torch

        generator = torch.Generator(device=loaded.device)
        if resume is None or not resume.restore_rng(generator):
            if request.seed is not None:
                generator.manual_seed(request.seed)
            else:
                generator.seed()  # a fresh random seed per request
        if resume is None:
            decoder = _IncrementalDecoder(loaded.tokenizer)
            stops = _StopCutter(request.stop)
            token_ids: list[int] = []
        else:
            decoder = _IncrementalDecoder(loaded.tokenizer, resume.decoder_window, resume.decoder_emitted)
            stops = _StopCutter(request.stop, held=resume.held)
            token_ids = list(resume.token_ids)
        cache, next_input = self._starting_point(loaded, request.request_id, prompt_ids, resume)
        # Cancel is checked first: it wins over a suspend asked at the same boundary.
        while len(token_ids) < budget and not self._is_cancelled(request.request_id):
            if self._is_suspended(request.request_id):
                yield self._suspension(prompt_ids, token_ids, decoder, stops, generator, cache)
                return
            with self._forward_lock, torch.inference_mode():
                # The cache argument was `past_key_values` before transformers 5.24.
                output = loaded.model(input_ids=next_input, cache=cache, use_cache=True, logits_to_keep=1)
            cache = output.cache
            token = _pick_token(output.logits[0, -1], sampling, generator)
            token_ids.append(token)
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
        yield Usage(prompt_tokens=len(prompt_ids), completion_tokens=len(token_ids))

    def _starting_point(
        self, loaded: _LoadedModel, request_id: str, prompt_ids: list[int], resume: _Checkpoint | None
    ) -> tuple[Any, torch.Tensor]:
        """(KV cache, next input ids) to decode from: none and the prompt for a new generation;
        for a resumed one, its kept cache, else one rebuilt, and its last generated id."""
        import torch

        if resume is None or not resume.token_ids:
            return None, torch.tensor([prompt_ids], device=loaded.device)
        last = resume.token_ids[-1]
        next_input = torch.tensor([[last]], device=loaded.device)
        length = len(prompt_ids) + len(resume.token_ids) - 1  # positions the cache holds: all but the last id
        kept = self.kv_caches.take(resume.cache_key) if resume.cache_key else None
        if kept is not None and kept.length == length and kept.next_token == last:
            self.kv_caches.count_resume("kv_cache")
            logger.debug("resuming %s from its kept KV cache (%d positions)", request_id, length)
            return kept.cache, next_input
        # One pass over the prompt and every generated id but the last rebuilds the cache;
        # feeding the last then gives the next token's logits, as the uninterrupted loop did.
        context = torch.tensor([prompt_ids + resume.token_ids[:-1]], device=loaded.device)
        with self._forward_lock, torch.inference_mode():
            cache = loaded.model(input_ids=context, use_cache=True, logits_to_keep=1).cache
        self.kv_caches.count_resume("recompute")
        logger.debug(
            "resuming %s by recomputing its KV cache over %d positions (%s)", request_id, length,
            "none was kept" if resume.cache_key is None else "not kept here any more",
        )
        return cache, next_input

    def _suspension(
        self,
        prompt_ids: list[int],
        token_ids: list[int],
        decoder: _IncrementalDecoder,
        stops: _StopCutter,
        generator: torch.Generator,
        cache: Any,
    ) -> Suspended:
        """The ``Suspended`` item of a generation stopped before its next forward pass;
        its KV cache is kept for the resume when the budget has room for it."""
        cache_key = None
        if cache is not None and token_ids:
            cache_key = self.kv_caches.put(
                _KeptCache(
                    cache=cache,
                    next_token=token_ids[-1],
                    length=len(prompt_ids) + len(token_ids) - 1,
                    size=_cache_bytes(cache),
                )
            )
        checkpoint = {
            "version": CHECKPOINT_VERSION,
            "prompt_tokens": len(prompt_ids),
            "token_ids": list(token_ids),
            "decoder": {"window": list(decoder.window), "emitted": decoder.emitted},
            "held": stops.held,
            "rng": {
                "device": generator.device.type,
                "state": base64.b64encode(bytes(generator.get_state().tolist())).decode("ascii"),
            },
            "cache_key": cache_key,
        }
        return Suspended(checkpoint=checkpoint, completion_tokens=len(token_ids))


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

    def __init__(self, tokenizer: Any, window: Sequence[int] = (), emitted: int = 0) -> None:
        self._tokenizer = tokenizer
        self._window: list[int] = list(window)  # ids since the last emitted boundary, plus context before it
        self._emitted = emitted  # how many ids of the window are already emitted as text

    @property
    def window(self) -> tuple[int, ...]:
        return tuple(self._window)

    @property
    def emitted(self) -> int:
        return self._emitted

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

    def __init__(self, stops: tuple[str, ...], held: str = "") -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = held  # a suspended stream's held text goes on being held
        self.stopped = False

    @property
    def held(self) -> str:
        return self._held

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


# --- suspending and resuming ----------------------------------------------------------------


@dataclass(frozen=True)
class _Checkpoint:
    """A ``Resume``'s checkpoint, checked: what ``_suspension`` wrote."""

    token_ids: list[int]  # every id generated so far, over all segments
    decoder_window: list[int]
    decoder_emitted: int
    held: str  # the stop cutter's held-back text (not yet sent)
    rng_device: str  # "cpu" or "cuda": the sampling generator's state fits only its own kind
    rng_state: bytes
    cache_key: str | None  # where the KV cache is kept, if it was

    @classmethod
    def of(cls, resume: Resume, loaded: _LoadedModel, prompt_tokens: int) -> _Checkpoint:
        """Raises a permanent AdapterError for a checkpoint that is not of this prompt and model
        (its message quotes none of it: a checkpoint holds the tenant's tokens)."""
        raw = resume.checkpoint
        try:
            if raw["version"] != CHECKPOINT_VERSION:
                raise ValueError("version")
            checkpoint = cls(
                token_ids=_int_list(raw["token_ids"]),
                decoder_window=_int_list(raw["decoder"]["window"]),
                decoder_emitted=_int(raw["decoder"]["emitted"]),
                held=_str(raw["held"]),
                rng_device=_str(raw["rng"]["device"]),
                rng_state=base64.b64decode(_str(raw["rng"]["state"]), validate=True),
                cache_key=None if raw["cache_key"] is None else _str(raw["cache_key"]),
            )
            prompt_tokens_then = _int(raw["prompt_tokens"])
        except (KeyError, TypeError, ValueError):  # binascii.Error is a ValueError
            raise AdapterError("cannot resume: the checkpoint is not one this adapter wrote", permanent=True) from None
        vocabulary = getattr(loaded.model.config, "vocab_size", None) or math.inf
        if (
            prompt_tokens_then != prompt_tokens
            or len(checkpoint.token_ids) != resume.completion_tokens
            or not all(0 <= i < vocabulary for i in checkpoint.token_ids + checkpoint.decoder_window)
            or not 0 <= checkpoint.decoder_emitted <= len(checkpoint.decoder_window)
        ):
            raise AdapterError(
                "cannot resume: the checkpoint was taken of another prompt, tokenizer or model", permanent=True
            )
        return checkpoint

    def restore_rng(self, generator: torch.Generator) -> bool:
        """Set ``generator`` to where sampling stopped; False where it cannot be (another device kind)."""
        import torch

        if generator.device.type != self.rng_device:
            # A CPU generator's state means nothing to a CUDA one: sampling goes on from a fresh
            # draw (greedy decoding is unaffected).
            logger.warning("resuming on %s a generation suspended on %s: its sampling cannot go on exactly",
                           generator.device.type, self.rng_device)
            return False
        try:
            generator.set_state(torch.tensor(list(self.rng_state), dtype=torch.uint8))
        except RuntimeError:
            raise AdapterError("cannot resume: the checkpoint's sampling state is malformed", permanent=True) from None
        return True


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError("not an integer")
    return value


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return [_int(item) for item in value]


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


@dataclass(frozen=True)
class _KeptCache:
    cache: Any  # a transformers Cache, on the model's device
    next_token: int  # the last generated id: the next forward pass's input
    length: int  # positions it holds: the prompt and every generated id but the last
    size: int  # bytes of its tensors


class _KvCacheStore:
    """Suspended generations' KV caches by checkpoint key, within ``budget_bytes``.

    The least recently suspended go first when a new one needs room; one
    larger than the whole budget is not kept (its resume recomputes). A
    resume takes its entry out, so nothing outlives its generation's next
    segment; one never resumed here stays until it is pushed out or the
    model unloads. ``resumed`` counts resumes by path ("kv_cache",
    "recompute"), for logs and tests. Thread-safe.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, _KeptCache] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.resumed = {"kv_cache": 0, "recompute": 0}

    def put(self, entry: _KeptCache) -> str | None:
        """Keep ``entry``; its key, or None when it is not kept."""
        if not 0 < entry.size <= self.budget_bytes:  # 0: no tensors found to measure it by
            return None
        key = uuid.uuid4().hex
        with self._lock:
            while self._entries and self._size + entry.size > self.budget_bytes:
                _, oldest = self._entries.popitem(last=False)
                self._size -= oldest.size
            self._entries[key] = entry
            self._size += entry.size
        return key

    def take(self, key: str) -> _KeptCache | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._size -= entry.size
        return entry

    def count_resume(self, path: str) -> None:
        with self._lock:
            self.resumed[path] += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._size

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries


def _cache_bytes(cache: Any) -> int:
    """Bytes of a KV cache's tensors: every layer's keys, values and whatever else it holds."""
    import torch

    holders = list(getattr(cache, "layers", None) or [cache])
    return sum(
        value.numel() * value.element_size()
        for holder in holders
        for value in vars(holder).values()
        if isinstance(value, torch.Tensor)
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
