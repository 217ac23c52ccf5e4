"""WebSocket /ws/tasks/{id}/: a task's tokens as they are generated.

Thin: authorisation lives in apps.streaming.auth, the replay and live tail in
apps.streaming.hub, cancellation in apps.tasks.services. Messages follow the
Contracts in ../shared/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.core import metrics
from apps.core.aio import raise_if_cancelled
from apps.core.errors import unavailable_dependency
from apps.streaming.auth import SUBPROTOCOL, StreamAccess, authorised_task, origin_allowed
from apps.streaming.events import CHUNK, DONE, client_message, done_message, end_of
from apps.streaming.hub import Subscription, hub
from apps.streaming.log import stream_log
from apps.streaming.open_streams import RENEW_SECONDS, close_stream, open_stream, renew_stream
from apps.streaming.revocations import key_watch
from apps.streaming.status import status_board
from apps.tasks import services as task_services
from apps.tasks.models import TERMINAL_STATES, Task, TaskState

TICK_SECONDS = 1.0
# Events a pump takes from its queue without waiting before it lets the other
# connections run (a send does not wait either while the socket takes data).
BURST = 32
PING_SECONDS = 15.0
# A finished task whose log holds no end event (expired, or never written):
# after this long the end is taken from the database instead.
DONE_FALLBACK_SECONDS = 2.0
# The close code of a stream refused because its tenant has MAX_STREAMS_PER_TENANT
# open already (in the application range 4000-4999; "429" as HTTP's Too Many Requests).
TOO_MANY_STREAMS = 4429
# The close code of a stream whose key (or the key that issued its stream token)
# was revoked while it was open ("401" as HTTP's Unauthorized).
KEY_REVOKED = 4401
# The close code of a stream cut short because the database or Redis is down
# (RFC 6455's "Try Again Later"): the client reconnects later with ?after=N,
# N being the last chunk seq it got, and loses nothing.
TRY_AGAIN_LATER = 1013


class TaskStreamConsumer(AsyncWebsocketConsumer):
    task: Task | None = None
    access: StreamAccess | None = None
    subscription: Subscription | None = None
    pump: asyncio.Task | None = None
    place: uuid.UUID | None = None  # the lease on one of the tenant's stream places (open_streams)
    accepted = False
    last_seq = 0  # the last chunk seq this stream sent (or the client's ?after=N)

    async def connect(self) -> None:
        try:
            await self._connect()
        except Exception as exc:
            down = unavailable_dependency(exc)
            if down is None:
                raise
            await self._unavailable(down)

    async def _unavailable(self, down: str) -> None:
        """A dependency is down: say so, and close with a code the client may retry on."""
        if not self.accepted:
            # Accepted to say why: a failed handshake would reach the client as a bare HTTP error.
            await self.accept(SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", []) else None)
        await self._send({
            "type": "error",
            "message": f"the {down} is unavailable; reconnect later with ?after={self.last_seq}",
        })
        await self.close(code=TRY_AGAIN_LATER)
        try:
            await self._release()
        except Exception as exc:  # giving back the stream's place needs the database too; it expires
            if unavailable_dependency(exc) is None:
                raise

    async def _connect(self) -> None:
        try:
            task_id = uuid.UUID(self.scope["url_route"]["kwargs"]["task_id"])
        except ValueError:
            await self.close()
            return
        if not origin_allowed(self.scope):
            await self.close()
            return
        self.access = await authorised_task(self.scope, task_id)
        if self.access is None:
            await self.close()  # before accept: the handshake is answered with HTTP 403
            return
        self.task = self.access.task
        self.place = place = await database_sync_to_async(open_stream)(self.task.tenant_id, self.task.id)
        after = _after_param(self.scope)
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", []) else None)
        self.accepted = True
        if place is None:
            # Accepted, then closed: a refused handshake would reach the client as a
            # bare HTTP 403, the same as a missing task; a close code says why.
            cap = settings.MAX_STREAMS_PER_TENANT
            await self._send({"type": "error", "message": f"too many open streams for this tenant (at most {cap})"})
            await self.close(code=TOO_MANY_STREAMS)
            return
        metrics.stream_connections.inc()  # with the place: given back together in disconnect
        if after is None:
            await self._send({"type": "error", "message": "after must be a non-negative integer"})
            after = 0
        self.last_seq = after
        key_watch().watch(self.access.api_key.id, self._key_revoked)
        # The pump is handed what it reads (the attributes are None before connect).
        self.subscription = await hub().subscribe(self.task.id)
        self.pump = asyncio.get_running_loop().create_task(
            self._pump(self.task, self.subscription, after, place)
        )

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def _release(self) -> None:
        """Stop serving this stream (once; the client's disconnect may follow a close of ours)."""
        if self.access is not None:
            key_watch().forget(self.access.api_key.id, self._key_revoked)
        if self.pump is not None:
            self.pump.cancel()
            self.pump = None
        if self.subscription is not None:
            hub().unsubscribe(self.subscription)
            self.subscription = None
        if self.place is not None:
            metrics.stream_connections.dec()
            place, self.place = self.place, None
            await database_sync_to_async(close_stream)(place)

    async def _key_revoked(self) -> None:
        await self._send({"type": "error", "message": "the key that opened this stream was revoked"})
        await self.close(code=KEY_REVOKED)
        await self._release()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "")
        except ValueError:
            await self._send({"type": "error", "message": "messages must be JSON objects"})
            return
        if isinstance(message, dict) and message.get("type") == "cancel":
            if self.access is None or not self.access.may_cancel:
                await self._send({"type": "error", "message": "cancelling needs a key with the tasks:write scope"})
                return
            await database_sync_to_async(task_services.cancel_task)(self.task)
            return
        await self._send(
            {"type": "error", "message": "unknown message; the only client message is {\"type\": \"cancel\"}"}
        )

    async def _pump(self, task: Task, subscription: Subscription, after: int, place: uuid.UUID) -> None:
        try:
            await self._pump_events(task, subscription, after, place)
        except Exception as exc:
            down = unavailable_dependency(exc)
            if down is None:
                raise
            self.pump = None  # this very task: the release below must not cancel it
            await self._unavailable(down)

    async def _pump_events(self, task: Task, subscription: Subscription, after: int, place: uuid.UUID) -> None:
        cipher = task.tenant.cipher
        started = False
        last_sent = time.monotonic()
        quiet_since = time.monotonic()
        renew_at = time.monotonic() + RENEW_SECONDS
        queue = subscription.queue
        in_a_row = 0  # events taken without waiting
        while True:
            if time.monotonic() >= renew_at:
                await database_sync_to_async(renew_stream)(place)
                renew_at = time.monotonic() + RENEW_SECONDS
            if in_a_row >= BURST:
                in_a_row = 0
                await asyncio.sleep(0)
            in_a_row = in_a_row + 1 if not queue.empty() else 0
            try:
                # A timeout scope, not wait_for: that costs a task per event.
                async with asyncio.timeout(TICK_SECONDS):
                    event = await queue.get()
            except TimeoutError:
                raise_if_cancelled()
                state, wait = await status_board().current(task.id)
                now = time.monotonic()
                if (
                    state in TERMINAL_STATES
                    and now - quiet_since >= DONE_FALLBACK_SECONDS
                    and not await _log_has_end(task.id)
                ):
                    # Only when the log itself holds no end: a busy hub that is
                    # merely late must not cut the stream short.
                    await self._finish_from_database(task.id)
                    return
                if not started and state in (TaskState.WAITING, TaskState.QUEUED):
                    await self._send({"type": "status", "state": state, **wait})
                    last_sent = now
                elif now - last_sent >= PING_SECONDS:
                    await self._send({"type": "ping"})
                    last_sent = now
                continue
            quiet_since = last_sent = time.monotonic()
            started = True
            if event.kind == CHUNK and event.seq <= after:
                continue
            await self._send(client_message(cipher, event))
            if event.kind == CHUNK:
                self.last_seq = event.seq
            if event.kind == DONE:
                await self.close(code=1000)
                return

    async def _finish_from_database(self, task_id: uuid.UUID) -> None:
        task = await database_sync_to_async(Task.objects.get)(pk=task_id)
        await self._send(done_message(end_of(task)))
        await self.close(code=1000)

    async def _send(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message, separators=(",", ":")))


async def _log_has_end(task_id: uuid.UUID) -> bool:
    return any(event.kind == DONE for _, event in await stream_log().read_all(task_id))


def _after_param(scope: dict) -> int | None:
    values = parse_qs(scope.get("query_string", b"").decode()).get("after")
    if not values:
        return 0
    try:
        after = int(values[0])
    except ValueError:
        return None
    return after if after >= 0 else None


