"""Checks every model adapter's tests share: the stream's shape, cancel from another thread,
and, for adapters that can suspend, that suspended and resumed streams equal uninterrupted ones."""

from __future__ import annotations

import dataclasses
import json
import threading

from apps.catalog.adapters import GenerationRequest, ModelAdapter, Resume, Suspended, TextChunk, Usage


def split_stream(items: list) -> tuple[list[str], Usage]:
    """(chunk texts, the final Usage), checking the contract's shape on the way:
    text chunks only, then exactly one Usage, last."""
    assert items and isinstance(items[-1], Usage), f"the last item must be Usage, got {items[-1:]!r}"
    assert all(isinstance(item, TextChunk) for item in items[:-1]), "only text chunks before the Usage"
    return [item.text for item in items[:-1]], items[-1]


def stream_and_cancel_after_first_chunk(adapter: ModelAdapter, request: GenerationRequest) -> list:
    """Consume ``request`` in one thread and cancel it from another once a chunk arrived;
    the stream must then end promptly. Returns everything the stream yielded."""
    items: list = []
    first_chunk = threading.Event()

    def consume() -> None:
        for item in adapter.stream(request):
            items.append(item)
            first_chunk.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert first_chunk.wait(10), "the stream never produced a chunk"
    canceller = threading.Thread(target=adapter.cancel, args=(request.request_id,))
    canceller.start()
    canceller.join()
    consumer.join(10)
    assert not consumer.is_alive(), "the stream did not stop after cancel"
    return items


def assert_counts_prompts_as_it_reports_them(counter: ModelAdapter, streamer: ModelAdapter,
                                             requests: list[GenerationRequest]) -> None:
    """``counter`` (created, never loaded, as the API process has it) counts each request's
    prompt exactly as ``streamer`` (loaded, as a worker has it) reports it in ``Usage``."""
    for request in requests:
        _, usage = split_stream(list(streamer.stream(request)))
        counted = counter.count_prompt_tokens(request.prompt, request.messages)
        assert counted == usage.prompt_tokens, (request.prompt, request.messages, counted, usage)


def _from_another_thread(action, request_id: str) -> None:
    """Call ``action(request_id)`` from another thread, as the runtime does, and wait for it."""
    caller = threading.Thread(target=action, args=(request_id,))
    caller.start()
    caller.join()


def stream_suspending_after(adapter: ModelAdapter, request: GenerationRequest, chunks: int) -> list:
    """Everything ``request``'s stream yields when ``suspend`` is called (from another thread)
    once it has yielded ``chunks`` text chunks (0: before it starts)."""
    if chunks == 0:
        _from_another_thread(adapter.suspend, request.request_id)
    items: list = []
    for item in adapter.stream(request):
        items.append(item)
        if isinstance(item, TextChunk) and sum(isinstance(i, TextChunk) for i in items) == chunks:
            _from_another_thread(adapter.suspend, request.request_id)
    return items


def assert_suspend_resume_equals_uninterrupted(
    adapter: ModelAdapter, request: GenerationRequest, suspend_after_chunks: list[int]
) -> list[Suspended]:
    """Run ``request`` uninterrupted, then again suspended once per entry of
    ``suspend_after_chunks`` (segment k is suspended after it yielded that many
    chunks) and resumed each time from its checkpoint as the runtime stores it
    (through JSON). The segments' text joined must equal the uninterrupted text,
    and the last segment's Usage the uninterrupted Usage (the whole generation is
    charged once). Every asked suspension must happen: pick counts the stream
    reaches. Returns the Suspended items, in order."""
    assert adapter.can_suspend
    chunks, uninterrupted = split_stream(list(adapter.stream(request)))
    expected = "".join(chunks)

    text = ""
    suspensions: list[Suspended] = []
    segment = request
    for after in suspend_after_chunks:
        items = stream_suspending_after(adapter, segment, after)
        last = items[-1]
        assert isinstance(last, Suspended), f"asked to suspend after {after} chunks, the stream ended with {last!r}"
        assert all(isinstance(item, TextChunk) for item in items[:-1]), "only text chunks before Suspended"
        assert sum(isinstance(item, TextChunk) for item in items) >= after
        text += "".join(item.text for item in items[:-1])
        assert expected.startswith(text), (expected, text)
        stored = json.loads(json.dumps(last.checkpoint))  # what the runtime keeps, and hands back
        assert stored == last.checkpoint, "the checkpoint must be plain JSON (no tuples, no bytes, string keys)"
        done = suspensions[-1].completion_tokens if suspensions else 0
        assert done <= last.completion_tokens <= uninterrupted.completion_tokens
        suspensions.append(last)
        segment = dataclasses.replace(
            request, resume=Resume(text=text, checkpoint=stored, completion_tokens=last.completion_tokens)
        )

    rest, usage = split_stream(list(adapter.stream(segment)))
    text += "".join(rest)
    assert text == expected
    assert usage == uninterrupted
    return suspensions


def assert_cancel_wins_over_suspend(adapter: ModelAdapter, request: GenerationRequest) -> None:
    """Suspend and then cancel a stream that has yielded a chunk: it ends with Usage, never
    Suspended, and has stopped early (``request`` must run past a few chunks uninterrupted)."""
    assert adapter.can_suspend
    _, uninterrupted = split_stream(list(adapter.stream(request)))
    stream = adapter.stream(request)
    first = next(stream)
    assert isinstance(first, TextChunk), first
    _from_another_thread(adapter.suspend, request.request_id)
    _from_another_thread(adapter.cancel, request.request_id)
    chunks, usage = split_stream([first, *stream])
    assert usage.completion_tokens < uninterrupted.completion_tokens, "the cancel stopped it early"
