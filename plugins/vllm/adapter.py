"""The vllm adapter: vLLM's AsyncLLM behind the platform's synchronous adapter contract.

Threads. ``AsyncLLM`` is asyncio-native: its output handler (the task that
pulls results from the engine-core process and routes them to each request)
runs on the event loop that was running when it started. The platform drives
adapters from many worker threads at once, so each adapter instance owns ONE
event loop on ONE dedicated thread; the engine is built, used, aborted and shut
down only on that loop. A worker thread's ``stream`` submits a consumer
coroutine there with ``run_coroutine_threadsafe`` and reads the consumer's
deltas from a ``queue.Queue``.

Suspend and resume (``can_suspend``). ``suspend`` aborts the request in the
engine, as ``cancel`` does, but flagged: the stream then ends with
``Suspended`` instead of ``Usage``, its checkpoint holding the prompt's and
the generated tokens' ids. Resuming submits a new request whose prompt is
those ids (a ``TokensPrompt``) with what is left of max_tokens; vLLM's prefix
cache makes its prefill cheap. The token boundary is the engine's output
boundary: the abort lands between two decode steps. plugins/vllm/mapping.py
has the pure half (checkpoint, resumed prompt, usage, held text) and says
what it guarantees: greedy decoding resumes exactly, seeded sampling does not.

vLLM is imported only when an engine is built (``_create_engine``), so the
plugin imports and registers on machines without vLLM (web servers, CPU
workers, the test suite).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from apps.catalog.adapters import (
    AdapterConfigError,
    AdapterError,
    GenerationRequest,
    ModelAdapter,
    ResourceNeeds,
    Suspended,
    TextChunk,
    TokenStream,
)
from plugins.vllm import mapping
from plugins.vllm.config import EngineSettings, estimated_gpu_memory_bytes, parse_config

logger = logging.getLogger(__name__)

# Suspends asked for requests that are not streaming yet, kept for when they
# start; a bound, because one asked for a request that never streams here
# would otherwise be kept for good.
EARLY_SUSPENDS_KEPT = 1024

# Bounds on waits for the engine's loop in the calls that must not hang a
# worker: a wedged loop makes health() report False and unload() move on.
HEALTH_TIMEOUT_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class VllmRuntime:
    """What the adapter uses from vLLM: the engine and the request-side types.

    Bundled so a test can supply a stand-in for all of it through one factory.
    """

    engine: Any  # vllm.v1.engine.async_llm.AsyncLLM
    sampling_params: Callable[..., Any]  # vllm.SamplingParams
    lora_request: Callable[[str, int, str], Any]  # vllm.lora.request.LoRARequest(name, int_id, path)
    delta_output_kind: Any  # vllm.sampling_params.RequestOutputKind.DELTA
    # Errors that mean "this request is invalid" (retrying cannot help).
    client_errors: tuple[type[BaseException], ...] = (ValueError,)
    # vllm.TokensPrompt: a TypedDict, so calling it builds the plain dict
    # {"prompt_token_ids": [...]} that generate() accepts as a prompt.
    tokens_prompt: Callable[..., Any] = dict


def _create_engine(settings: EngineSettings) -> VllmRuntime:
    """Build the real engine. Called on the adapter's event loop, so the engine's
    output handler starts on that loop (AsyncLLM starts it eagerly when a loop is running)."""
    import vllm.exceptions
    from vllm import SamplingParams, TokensPrompt
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**settings.engine_args()))
    # VLLMValidationError subclasses ValueError in older releases; newer ones
    # root request errors at VLLMClientError. Take whichever this vLLM has.
    client_errors = (ValueError,) + tuple(
        getattr(vllm.exceptions, name)
        for name in ("VLLMClientError", "VLLMValidationError")
        if isinstance(getattr(vllm.exceptions, name, None), type)
    )
    return VllmRuntime(
        engine=engine,
        sampling_params=SamplingParams,
        lora_request=LoRARequest,
        delta_output_kind=RequestOutputKind.DELTA,
        client_errors=client_errors,
        tokens_prompt=TokensPrompt,
    )


@dataclass
class _Call:
    """One in-flight stream: what its consumer coroutine needs and how to stop it."""

    request_id: str
    prompt: Any  # the prompt text, or a TokensPrompt when resuming
    sampling_params: Any
    lora_request: Any
    priority: int
    client_errors: tuple[type[BaseException], ...]
    items: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    suspended: threading.Event = field(default_factory=threading.Event)
    future: concurrent.futures.Future | None = None

    def suspending(self) -> bool:
        """Suspended and not cancelled: a cancel wins over a suspend."""
        return self.suspended.is_set() and not self.cancelled.is_set()


class VllmAdapter(ModelAdapter):
    name = "vllm"
    can_suspend = True

    def __init__(self, config: dict[str, Any], plugin_settings: dict[str, Any]) -> None:
        super().__init__(config, plugin_settings)
        self.settings = parse_config(config, plugin_settings)
        self._lora = mapping.select_lora(self.settings.loras, self.settings.default_lora)
        self._lock = threading.Lock()  # guards the fields below
        self._runtime: VllmRuntime | None = None
        self._tokenizer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._calls: dict[str, _Call] = {}
        self._early_suspends: dict[str, None] = {}  # an ordered set: request ids, oldest first

    # -- lifecycle ------------------------------------------------------------

    def resources(self) -> ResourceNeeds:
        estimate = self.settings.gpu_memory_bytes
        if estimate is None:
            estimate = estimated_gpu_memory_bytes(self.settings.model)
        return ResourceNeeds(device="gpu", gpu_memory_bytes=estimate)

    def load(self, device: str = "gpu") -> None:
        # ``device`` is informational: vLLM places the model itself, on
        # tensor_parallel_size of the GPUs this process sees (CUDA_VISIBLE_DEVICES).
        with self._lock:
            if self._runtime is not None:
                return
            if not os.path.isdir(self.settings.model):
                raise AdapterConfigError("model", f"{self.settings.model} is not a directory on this worker")
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_run_loop, args=(loop,), name=f"vllm-engine:{self.settings.model}", daemon=True
            )
            thread.start()
            try:
                runtime, tokenizer = asyncio.run_coroutine_threadsafe(self._start_engine(), loop).result()
            except Exception as exc:
                _stop_loop(loop, thread)
                if isinstance(exc, (AdapterConfigError, AdapterError)):
                    raise
                raise AdapterError(f"the vLLM engine failed to start: {exc.__class__.__name__}: {exc}") from exc
            self._loop, self._thread, self._runtime, self._tokenizer = loop, thread, runtime, tokenizer

    async def _start_engine(self) -> tuple[VllmRuntime, Any]:
        runtime = _create_engine(self.settings)
        tokenizer = runtime.engine.get_tokenizer()
        if inspect.isawaitable(tokenizer):  # a coroutine in vLLM releases before the renderer split
            tokenizer = await tokenizer
        return runtime, tokenizer

    def unload(self) -> None:
        with self._lock:
            runtime, loop, thread = self._runtime, self._loop, self._thread
            calls = list(self._calls.values())
            self._runtime = self._loop = self._thread = self._tokenizer = None
        if runtime is None or loop is None or thread is None:
            return
        # Streams still running end with a (retryable) AdapterError; cancelling
        # their consumers makes vLLM's generate() abort them in the engine.
        for call in calls:
            if call.future is not None:
                call.future.cancel()
        try:
            asyncio.run_coroutine_threadsafe(_shutdown(runtime.engine), loop).result(SHUTDOWN_TIMEOUT_SECONDS)
        except Exception:
            logger.exception("vLLM engine for %s did not shut down cleanly", self.settings.model)
        _stop_loop(loop, thread)

    def health(self) -> bool:
        with self._lock:
            runtime, loop = self._runtime, self._loop
        if runtime is None or loop is None:
            return False
        if runtime.engine.errored:
            return False
        try:
            asyncio.run_coroutine_threadsafe(runtime.engine.check_health(), loop).result(HEALTH_TIMEOUT_SECONDS)
        except Exception:
            return False
        return True

    # -- generation -----------------------------------------------------------

    def stream(self, request: GenerationRequest) -> TokenStream:
        resumed: mapping.ResumePoint | None = None
        if request.resume is not None:
            try:
                resumed = mapping.resume_point(request.resume)
            except ValueError as exc:
                raise AdapterError(f"cannot resume this generation: {exc}", permanent=True) from exc
        counter = mapping.UsageCounter(resumed)
        text = mapping.ResumedText(resumed.held_text if resumed else "", request.stop)
        if resumed is not None and mapping.remaining_tokens(request) == 0:
            # Nothing left to generate (the budget ran out exactly at the suspension).
            yield from _chunks(text.finish())
            yield counter.usage()
            return
        call = self._start_call(request, resumed)
        # The text of a suspension's last output (the abort's): what vLLM was
        # holding back for its stop strings, kept for the checkpoint.
        held = ""
        try:
            while True:
                item = call.items.get()
                if isinstance(item, concurrent.futures.Future):  # the consumer ended
                    _raise_if_failed(item, call.client_errors)
                    break
                new_text = counter.add(item)
                if item.finish_reason == "abort" and call.suspending():
                    held += new_text
                    continue
                yield from _chunks(text.add(new_text))
                if text.stopped:
                    break  # a stop string straddled the suspension point; finally aborts the request
            if (
                call.suspending()
                and not text.stopped
                and counter.finish_reason in (None, "abort")  # a request that finished first just ends
            ):
                yield Suspended(
                    checkpoint=counter.checkpoint(text.take_held() + held),
                    completion_tokens=counter.completion_tokens,
                )
                return
            yield from _chunks(text.finish() + held)
            yield counter.usage()
        finally:
            with self._lock:
                self._calls.pop(request.request_id, None)
            if call.future is not None and not call.future.done():
                # The worker stopped reading (closed the generator): cancelling
                # the consumer makes vLLM abort the request and free its slot.
                call.future.cancel()

    def cancel(self, request_id: str) -> None:
        self._abort(request_id, "cancelled")

    def suspend(self, request_id: str) -> None:
        # The same abort as cancel's; the flag makes the stream end with
        # Suspended. vLLM aborts between decode steps, so what was generated
        # up to then is whole tokens: the token boundary the contract asks for.
        with self._lock:
            if request_id not in self._calls:
                # The runtime may ask before the stream's first item (stream() is
                # a generator: nothing runs until it is read); it is kept for then.
                self._early_suspends[request_id] = None
                while len(self._early_suspends) > EARLY_SUSPENDS_KEPT:
                    del self._early_suspends[next(iter(self._early_suspends))]
                return
        self._abort(request_id, "suspended")

    def _abort(self, request_id: str, flag: Literal["cancelled", "suspended"]) -> None:
        with self._lock:
            call = self._calls.get(request_id)
            runtime, loop = self._runtime, self._loop
        if call is None or runtime is None or loop is None:
            return  # finished already, or never here
        # The flag covers an abort that arrives before the engine knows the
        # request (abort of an unknown id is a no-op): the consumer checks it.
        getattr(call, flag).set()
        future = asyncio.run_coroutine_threadsafe(runtime.engine.abort(request_id), loop)
        future.add_done_callback(_log_abort_failure)

    def _start_call(self, request: GenerationRequest, resumed: mapping.ResumePoint | None) -> _Call:
        with self._lock:
            runtime, loop, tokenizer = self._runtime, self._loop, self._tokenizer
        if runtime is None or loop is None:
            raise AdapterError("the vLLM engine is not loaded on this worker")
        # ValueError: what mapping raises for a request this model cannot serve.
        client_errors: tuple[type[BaseException], ...] = (ValueError, *runtime.client_errors)
        try:
            resumed_ids = mapping.resumed_prompt_token_ids(resumed) if resumed is not None else None
            if resumed_ids is not None:
                prompt: Any = runtime.tokens_prompt(prompt_token_ids=resumed_ids)
            else:
                prompt = mapping.prompt_text(request, getattr(tokenizer, "apply_chat_template", None))
            sampling_params = runtime.sampling_params(
                **mapping.sampling_kwargs(request), output_kind=runtime.delta_output_kind
            )
            lora = self._lora
            lora_request = runtime.lora_request(lora.name, lora.int_id, lora.path) if lora else None
        except client_errors as exc:
            raise AdapterError(f"vLLM rejected the request: {exc}", permanent=True) from exc
        call = _Call(
            request_id=request.request_id,
            prompt=prompt,
            sampling_params=sampling_params,
            lora_request=lora_request,
            priority=mapping.vllm_priority(request.priority),
            client_errors=client_errors,
        )
        with self._lock:
            if self._loop is not loop:
                raise AdapterError("the vLLM engine was unloaded")
            if request.request_id in self._calls:
                # cancel() and abort() address requests by id: two at once would be ambiguous.
                raise AdapterError(f"request {request.request_id} is already streaming here")
            self._calls[request.request_id] = call
            if request.request_id in self._early_suspends:
                del self._early_suspends[request.request_id]
                call.suspended.set()  # the consumer then ends at once: Suspended, nothing generated
            call.future = asyncio.run_coroutine_threadsafe(self._consume(runtime.engine, call), loop)
        # The terminal item: put when the consumer returns, fails or is
        # cancelled, even if it never got to run (cancelled while queued).
        call.future.add_done_callback(call.items.put)
        return call

    async def _consume(self, engine: Any, call: _Call) -> None:
        """On the engine's loop: feed one request's deltas to its worker thread."""
        if call.cancelled.is_set() or call.suspended.is_set():
            return
        outputs = engine.generate(
            call.prompt, call.sampling_params, call.request_id, lora_request=call.lora_request, priority=call.priority
        )
        aborted = False
        try:
            async for output in outputs:
                delta = mapping.delta_of(output)
                call.items.put(delta)
                if delta.finished:
                    continue
                if call.cancelled.is_set():
                    break  # the abort raced the request into the engine; closing aborts it
                if call.suspended.is_set() and not aborted:
                    # The same race for a suspend, but aborted rather than closed:
                    # the abort's last output releases the text vLLM holds back
                    # for stop strings, which the checkpoint needs. (An abort
                    # of a request already aborted is a no-op.)
                    aborted = True
                    await engine.abort(call.request_id)
        finally:
            await outputs.aclose()  # on an early exit, generate() aborts the request in the engine


def _chunks(text: str) -> list[TextChunk]:
    return [TextChunk(text)] if text else []


def _raise_if_failed(future: concurrent.futures.Future, client_errors: tuple[type[BaseException], ...]) -> None:
    """Turn how a consumer ended into the contract's errors (nothing when it simply finished)."""
    if future.cancelled():
        raise AdapterError("the vLLM engine was unloaded while generating")
    exc = future.exception()
    if exc is None:
        return
    if isinstance(exc, client_errors):
        raise AdapterError(f"vLLM rejected the request: {exc}", permanent=True) from exc
    # EngineDeadError, EngineGenerateError and anything unforeseen: another
    # attempt (on a healthy engine) may well succeed.
    raise AdapterError(f"vLLM engine error: {exc.__class__.__name__}: {exc}") from exc


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _shutdown(engine: Any) -> None:
    """On the loop: let cancelled consumers unwind, stop the engine, then end what is left.

    unload() cancelled the consumers before scheduling this, so they are
    already cancelling; vLLM's generate() aborts each request as it unwinds,
    which needs the engine still up.
    """
    current = asyncio.current_task()
    unwinding = [task for task in asyncio.all_tasks() if task is not current and task.cancelling()]
    if unwinding:
        await asyncio.wait(unwinding, timeout=SHUTDOWN_TIMEOUT_SECONDS)
    engine.shutdown()
    leftover = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in leftover:
        task.cancel()
    if leftover:
        await asyncio.wait(leftover, timeout=SHUTDOWN_TIMEOUT_SECONDS)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(SHUTDOWN_TIMEOUT_SECONDS)
    if thread.is_alive():
        logger.error("the vLLM event loop thread %s did not stop", thread.name)
    else:
        loop.close()


def _log_abort_failure(future: concurrent.futures.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("vLLM abort failed: %r", future.exception())
