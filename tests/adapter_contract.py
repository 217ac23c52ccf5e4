"""Checks every model adapter's tests share: the stream's shape and cancel from another thread."""

from __future__ import annotations

import threading

from apps.catalog.adapters import GenerationRequest, ModelAdapter, TextChunk, Usage


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
