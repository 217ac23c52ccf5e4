"""WebSocket streaming against the real platform: uvicorn + consumer processes,
a real WebSocket client. Runs on SQLite (chunk log in the database) and on
PostgreSQL + Redis (chunk log in Redis Streams)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets

from tests.e2e.conftest import isolated_platform_env
from tests.e2e.harness import Platform, add_echo_model, wait_finished

pytestmark = pytest.mark.e2e

WORDS = [f"word{i}" for i in range(40)]
PROMPT = " ".join(WORDS)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with isolated_platform_env(tmp_path_factory.mktemp("streaming")) as env:
        running = Platform(env)
        try:
            running.wait_ready()
            seed = running.read_seed()
            add_echo_model(env, "echo-slow", 40)
            add_echo_model(env, "echo-crawl", 2)
            running.api_key = seed["API_KEY"]
            yield running
        finally:
            running.stop()


@pytest.fixture
def client(platform):
    headers = {"Authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.base_url, headers=headers, timeout=10) as c:
        yield c


def submit(client: httpx.Client, **fields) -> str:
    response = client.post("/api/v1/tasks", json={"model": "echo-slow", "prompt": PROMPT, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def collect(url: str, **connect_args) -> tuple[list[dict], int | None]:
    """Every server message until the server closes, and the close code."""
    messages = []
    async with websockets.connect(url, **connect_args) as ws:
        async for raw in ws:
            messages.append(json.loads(raw))
    return messages, ws.close_code


def auth(platform) -> dict:
    return {"additional_headers": {"Authorization": f"Bearer {platform.api_key}"}}


def chunks(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "chunk"]


def test_live_stream_delivers_every_chunk_once_in_order_then_done(platform, client):
    task_id = submit(client)
    messages, code = asyncio.run(collect(f"{platform.ws_url}/ws/tasks/{task_id}/", **auth(platform)))
    stream = chunks(messages)
    assert [m["seq"] for m in stream] == list(range(1, len(stream) + 1))
    assert len(stream) > 1  # coalesced, but still streamed in pieces
    assert "".join(m["text"] for m in stream) == PROMPT
    assert messages[-1] == {
        "type": "done",
        "status": "succeeded",
        "usage": {"prompt_tokens": 40, "completion_tokens": 40, "total_tokens": 80},
        "error": None,
    }
    assert code == 1000


def test_late_joiner_gets_the_replay_and_after_skips_what_it_has(platform, client):
    task_id = submit(client)
    wait_finished(client, task_id)
    full, _ = asyncio.run(collect(f"{platform.ws_url}/ws/tasks/{task_id}/", **auth(platform)))
    assert "".join(m["text"] for m in chunks(full)) == PROMPT
    assert full[-1]["type"] == "done"

    last_seq = chunks(full)[-1]["seq"]
    cut = last_seq // 2
    rest, _ = asyncio.run(collect(f"{platform.ws_url}/ws/tasks/{task_id}/?after={cut}", **auth(platform)))
    assert [m["seq"] for m in chunks(rest)] == list(range(cut + 1, last_seq + 1))
    assert chunks(rest) == chunks(full)[cut:]


def test_reconnect_mid_stream_with_after_continues_without_gaps_or_repeats(platform, client):
    task_id = submit(client, model="echo-crawl", prompt="a b c d e f g h")

    async def scenario():
        received = []
        async with websockets.connect(f"{platform.ws_url}/ws/tasks/{task_id}/", **auth(platform)) as ws:
            while len(chunks(received)) < 2:
                received.append(json.loads(await ws.recv()))
        after = chunks(received)[-1]["seq"]
        tail, code = await collect(f"{platform.ws_url}/ws/tasks/{task_id}/?after={after}", **auth(platform))
        return chunks(received) + chunks(tail), tail[-1], code

    stream, last, code = asyncio.run(scenario())
    assert [m["seq"] for m in stream] == list(range(1, len(stream) + 1))
    assert "".join(m["text"] for m in stream) == "a b c d e f g h"
    assert last["type"] == "done" and code == 1000


def test_status_messages_while_queued(platform, client):
    # Two crawling tasks fill both consumer slots; the third waits in the queue.
    blockers = [submit(client, model="echo-crawl", prompt="x y z") for _ in range(2)]
    waiting = submit(client, model="echo-crawl", prompt="q")

    async def first_message():
        async with websockets.connect(f"{platform.ws_url}/ws/tasks/{waiting}/", **auth(platform)) as ws:
            return json.loads(await ws.recv())

    status = asyncio.run(first_message())
    assert status["type"] == "status"
    assert status["state"] == "queued"
    assert isinstance(status["queue_position"], int) and status["queue_position"] >= 1
    assert "estimated_start_seconds" in status
    for task_id in [*blockers, waiting]:
        client.post(f"/api/v1/tasks/{task_id}/cancel")


def test_client_cancel_ends_the_stream_with_cancelled(platform, client):
    task_id = submit(client, model="echo-crawl", prompt="one two three four five six seven eight nine ten")

    async def scenario():
        messages = []
        async with websockets.connect(f"{platform.ws_url}/ws/tasks/{task_id}/", **auth(platform)) as ws:
            await ws.send(json.dumps({"type": "cancel"}))
            async for raw in ws:
                messages.append(json.loads(raw))
        return messages, ws.close_code

    messages, code = asyncio.run(scenario())
    assert messages[-1]["type"] == "done"
    assert messages[-1]["status"] == "cancelled"
    assert code == 1000
    assert client.get(f"/api/v1/tasks/{task_id}").json()["status"] == "cancelled"


def test_protocol_errors_get_an_error_message(platform, client):
    task_id = submit(client, model="echo-crawl", prompt="a b c")

    async def scenario():
        async with websockets.connect(f"{platform.ws_url}/ws/tasks/{task_id}/", **auth(platform)) as ws:
            await ws.send("this is not json")
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "error":
                    await ws.send(json.dumps({"type": "cancel"}))
                    return message

    assert "JSON" in asyncio.run(scenario())["message"]


def test_browser_stream_token_subprotocol(platform, client):
    task_id = submit(client)
    token = client.post(f"/api/v1/tasks/{task_id}/stream-token").json()["token"]

    async def scenario():
        async with websockets.connect(
            f"{platform.ws_url}/ws/tasks/{task_id}/",
            subprotocols=["llmagentos", f"token.{token}"],
            origin=platform.base_url,
        ) as ws:
            chosen = ws.subprotocol
            messages = [json.loads(raw) async for raw in ws]
        return chosen, messages

    chosen, messages = asyncio.run(scenario())
    assert chosen == "llmagentos"
    assert "".join(m["text"] for m in chunks(messages)) == PROMPT

    # The token is bound to its task.
    other = submit(client)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        asyncio.run(collect(f"{platform.ws_url}/ws/tasks/{other}/", subprotocols=["llmagentos", f"token.{token}"]))
    assert refused.value.response.status_code == 403


def test_missing_task_and_other_tenants_task_are_refused_alike(platform, client):
    from tests.e2e.harness import manage

    task_id = submit(client)
    slug = manage(platform.env, "create_tenant", f"Other {uuid.uuid4().hex[:6]}")
    other_key = manage(platform.env, "create_api_key", slug)

    def refusal(url: str, headers: dict) -> int:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            asyncio.run(collect(url, additional_headers=headers))
        return refused.value.response.status_code

    other_tenant = refusal(f"{platform.ws_url}/ws/tasks/{task_id}/", {"Authorization": f"Bearer {other_key}"})
    missing = refusal(f"{platform.ws_url}/ws/tasks/{uuid.uuid4()}/", {"Authorization": f"Bearer {platform.api_key}"})
    no_key = refusal(f"{platform.ws_url}/ws/tasks/{task_id}/", {})
    assert other_tenant == missing == no_key == 403


def test_foreign_origin_is_refused(platform, client):
    task_id = submit(client)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        asyncio.run(collect(f"{platform.ws_url}/ws/tasks/{task_id}/", origin="https://evil.example", **auth(platform)))
    assert refused.value.response.status_code == 403


def test_fifty_concurrent_streams_each_get_every_chunk_in_order(platform, client):
    prompts = {}
    for i in range(50):
        words = " ".join(f"t{i}w{j}" for j in range(20))
        prompts[submit(client, model="echo", prompt=words)] = words

    async def scenario():
        return await asyncio.gather(
            *(collect(f"{platform.ws_url}/ws/tasks/{task_id}/", **auth(platform)) for task_id in prompts)
        )

    results = asyncio.run(scenario())
    for (task_id, words), (messages, code) in zip(prompts.items(), results, strict=True):
        stream = chunks(messages)
        assert [m["seq"] for m in stream] == list(range(1, len(stream) + 1)), task_id
        assert "".join(m["text"] for m in stream) == words, task_id
        assert messages[-1]["type"] == "done" and messages[-1]["status"] == "succeeded"
        assert code == 1000


def test_fifty_concurrent_tiny_model_streams_across_two_workers(platform, client):
    """The issue's proof: real tokens from the tiny local model, two worker processes
    (make run's own and a second one), 50 streams at once, each complete and in order."""
    from tests.e2e.harness import manage, start_worker

    second = start_worker(platform.env, "second-worker", slots=4)
    try:
        # Registered, and told by its first heartbeat which models it serves: only then does
        # it take tasks (on a loaded machine the first worker could otherwise run all fifty).
        second.wait_for_log("worker second-worker serves:", timeout=120)
        task_ids = [
            submit(client, model="tiny", prompt=f"story number {i}", max_tokens=12, seed=i) for i in range(50)
        ]

        async def scenario():
            return await asyncio.gather(
                *(collect(f"{platform.ws_url}/ws/tasks/{task_id}/", **auth(platform)) for task_id in task_ids)
            )

        results = asyncio.run(scenario())
        for task_id, (messages, code) in zip(task_ids, results, strict=True):
            stream = chunks(messages)
            stored = client.get(f"/api/v1/tasks/{task_id}").json()
            assert messages[-1]["type"] == "done" and messages[-1]["status"] == "succeeded", messages[-1]
            assert [m["seq"] for m in stream] == list(range(1, len(stream) + 1)), task_id
            # On a loaded machine a lease may lapse and the task run again (at least once,
            # docs/reliability.md): then the stream says "restart" and the text starts over.
            assert "".join(m["text"] for m in chunks(_since_last_restart(messages))) == stored["output"], task_id
            assert 0 < stored["usage"]["completion_tokens"] <= 12
            assert messages[-1]["usage"] == stored["usage"]
            assert code == 1000
        ran_on = manage(
            platform.env, "shell", "--no-imports", "-v", "0", "-c",
            "from apps.tasks.models import Task; "
            f"print(len(set(Task.objects.filter(pk__in={task_ids!r}).values_list('worker_name', flat=True))))",
        )
        assert ran_on == "2"
    finally:
        second.stop()


def _since_last_restart(messages: list[dict]) -> list[dict]:
    restarts = [index for index, message in enumerate(messages) if message["type"] == "restart"]
    return messages[restarts[-1] + 1:] if restarts else messages
