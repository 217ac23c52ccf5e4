"""/v1: OpenAI's models, chat completions and completions, each request a task.

Thin: the request becomes a task through apps.tasks.services.submit_task (the
same admission, quotas, fair share and dispatch as POST /api/v1/tasks), and
the task's stream, pushed by the process's stream hub, becomes server-sent
events (``stream: true``) or one object. Errors are the Contracts' (OpenAI's
shape), mapped by llmagentos.api_errors like every route's.

The completion's id is the task's id, also in an ``X-Task-ID`` header. A client
that goes away before the end cancels the task (its charge is then the tokens
produced) unless it sent ``X-Keep-On-Disconnect: true``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request

from apps.catalog.models import LLMModel
from apps.core.errors import InvalidInput, PermissionRefused, UnknownModel
from apps.core.parsers import parse_json
from apps.gateway.requests import CHAT, COMPLETION, PRIORITY_HEADER, TIER_OF_CLASS, Translated, translate
from apps.gateway.responses import DONE_FRAME, KEEP_ALIVE_FRAME, Completion, frame
from apps.gateway.stream import Ended, Idle, Restarted, Text, follow
from apps.security.crypto import TenantCipher
from apps.tasks.api.views import idempotency_key_of
from apps.tasks.models import Task, TaskState
from apps.tasks.services import Submission, cancel_task, submit_task
from apps.tenants.authentication import ApiKeyAuthentication, TenantPrincipal
from apps.tenants.permissions import HasActiveTenantKey
from llmagentos.api_errors import error_body, error_response, rate_limit_headers

KEEP_HEADER = "X-Keep-On-Disconnect"
TASK_ID_HEADER = "X-Task-ID"


@dataclass(frozen=True)
class _Scope:
    """What HasActiveTenantKey reads from a view: the scope it needs."""

    required_scope: str


def _authenticated(request: HttpRequest, scope: str) -> tuple[Request, TenantPrincipal]:
    """The caller's API key (Bearer), of an active tenant, holding ``scope``: the
    same checks, errors included, as every /api/v1 view's."""
    drf_request = Request(request, authenticators=[ApiKeyAuthentication()])
    HasActiveTenantKey().has_permission(drf_request, _Scope(scope))
    principal = drf_request.user
    assert isinstance(principal, TenantPrincipal)  # has_permission refuses anyone else
    return drf_request, principal


def _method_not_allowed(allowed: str) -> JsonResponse:
    response = JsonResponse(
        error_body(405, "method_not_allowed", f"this route answers {allowed} only"), status=405
    )
    response["Allow"] = allowed
    return response


# --- /v1/models ------------------------------------------------------------------------


def _model_object(model: LLMModel) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": int(model.created_at.timestamp()), "owned_by": "llmagentos"}


@csrf_exempt  # API keys, not cookies: no cross-site request can carry one
def models(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        _, principal = _authenticated(request, "models:read")
        visible = LLMModel.objects.visible_to(principal.tenant)
        return JsonResponse({"object": "list", "data": [_model_object(model) for model in visible]})
    except Exception as exc:
        return error_response(exc, request)


@csrf_exempt
def model(request: HttpRequest, model_id: str) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        _, principal = _authenticated(request, "models:read")
        found = LLMModel.objects.visible_to(principal.tenant).filter(name=model_id).first()
        if found is None:
            raise UnknownModel(f"model {model_id!r} does not exist or is not available")
        return JsonResponse(_model_object(found))
    except Exception as exc:
        return error_response(exc, request)


# --- /v1/chat/completions and /v1/completions ---------------------------------------------


@dataclass(frozen=True)
class _Accepted:
    task: Task
    cipher: TenantCipher
    completion: Completion
    stream: bool
    keep_on_disconnect: bool
    headers: dict[str, str]


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return _method_not_allowed("POST")
    return await complete(request, CHAT, sync_to_async)


@csrf_exempt
async def completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return _method_not_allowed("POST")
    return await complete(request, COMPLETION, sync_to_async)


# How the submission (synchronous: the ORM) is run off the event loop. Django's
# own request cycle passes asgiref's default, which runs it in the request's
# thread (the test client's thread, whose transaction a test may hold); the
# ASGI front (apps.gateway.front) passes a pool of long-lived threads.
RunSync = Callable[[Callable[..., Any]], Callable[..., Awaitable[Any]]]


async def complete(request: HttpRequest, kind: str, run_sync: RunSync) -> HttpResponseBase:
    """A POST to /v1/chat/completions or /v1/completions, answered: the refusal,
    the whole completion, or a streamed response whose ``close`` cancels the task
    of a client that left before its end."""
    submitting = asyncio.ensure_future(run_sync(_accept)(request, kind))
    try:
        accepted = await asyncio.shield(submitting)
    except asyncio.CancelledError:
        # The client left during the submission, which goes on regardless (in a
        # thread): cancel what it made.
        accepted = await submitting
        if isinstance(accepted, _Accepted):
            await _abandon(accepted)
        raise
    if isinstance(accepted, HttpResponse):
        return accepted  # refused
    response: HttpResponseBase
    if accepted.stream:
        response = _TaskEventStream(accepted)
    else:
        response = await _whole(accepted)
    for name, value in accepted.headers.items():
        response[name] = value
    return response


def _accept(request: HttpRequest, kind: str) -> _Accepted | HttpResponse:
    """The request as a submitted task, or the refusal to answer with."""
    try:
        drf_request, principal = _authenticated(request, "tasks:write")
        translated = translate(kind, _json_body(request), request.headers.get(PRIORITY_HEADER))
        keep = _keep_on_disconnect(request)
        submission = _submit(principal, translated, idempotency_key_of(drf_request))
    except Exception as exc:
        return error_response(exc, request)
    task = submission.task
    headers = {TASK_ID_HEADER: str(task.id), **rate_limit_headers(submission.rate_limits)}
    if submission.replayed:
        headers["Idempotent-Replayed"] = "true"
    completion = Completion(
        kind=kind,
        id=str(task.id),
        created=int(task.created_at.timestamp()),
        # The model that runs it: a routed model's chosen candidate, else as the request named it.
        model=task.model.name if task.routed_from_id is not None else translated.task.model,
        max_tokens=task.max_tokens,
        service_tier=TIER_OF_CLASS[task.priority],
        include_usage=translated.include_usage,
    )
    return _Accepted(task, principal.tenant.cipher, completion, translated.stream, keep, headers)


def _json_body(request: HttpRequest) -> Any:
    try:
        return parse_json(request.body or b"null")  # capped nesting: apps.core.parsers
    except ValueError:
        raise InvalidInput("the body is not valid JSON", code="invalid_json") from None


def _keep_on_disconnect(request: HttpRequest) -> bool:
    value = request.headers.get(KEEP_HEADER)
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise InvalidInput(f"{KEEP_HEADER} must be true or false", code="invalid_value", param=KEEP_HEADER)
    return value.lower() == "true"


def _submit(principal: TenantPrincipal, translated: Translated, idempotency_key: str | None) -> Submission:
    try:
        return submit_task(principal.tenant, principal.api_key, translated.task, idempotency_key)
    except PermissionRefused as exc:
        if exc.param != "priority":
            raise
        # The plan's cap on the class: name what asked for it here (there is no "priority" field on /v1).
        raise exc.relocated(exc.message, translated.priority_param) from None


async def _abandon(accepted: _Accepted) -> None:
    """The client left before the end: cancel the task (its charge is then the
    tokens produced so far), unless the request asked to keep it."""
    if not accepted.keep_on_disconnect:
        await database_sync_to_async(cancel_task)(accepted.task)


def _failure_body(ended: Ended) -> tuple[int, dict[str, Any]]:
    """The error for a task that ended without succeeding: 409 cancelled (by a
    cancel or an erasure elsewhere), else 500 (the model failed, after the
    platform's own retries)."""
    status = 409 if ended.status == TaskState.CANCELLED else 500
    error = ended.error or {}
    code = error.get("code") or ended.status
    message = f"the task ended {ended.status}: {error.get('message') or code}"
    return status, error_body(status, code, message)


async def _whole(accepted: _Accepted) -> HttpResponse:
    parts: list[str] = []
    ended: Ended | None = None
    try:
        async with aclosing(follow(accepted.task.id, accepted.cipher)) as events:
            async for event in events:
                if isinstance(event, Text):
                    parts.append(event.text)
                elif isinstance(event, Restarted):
                    parts.clear()  # a new attempt generates the whole text again
                elif isinstance(event, Ended):
                    ended = event
    except asyncio.CancelledError:  # the client disconnected (Django cancels the view)
        await _abandon(accepted)
        raise
    assert ended is not None  # follow() always ends with the end
    if ended.status != TaskState.SUCCEEDED:
        status, body = _failure_body(ended)
        response = JsonResponse(body, status=status)
        # The platform retried already; a new request would be a new (charged) task.
        response["x-should-retry"] = "false"
        return response
    text = ended.output if ended.output is not None else "".join(parts)
    return JsonResponse(accepted.completion.whole(text, ended.usage))


class _TaskEventStream(StreamingHttpResponse):
    """A streamed completion's server-sent events.

    Django closes every response once it is done with it: sent to the end, cut
    off by the client's disconnect, or never begun because the client left
    between the view's return and the first byte. ``close`` is therefore the
    one place that sees every way a stream can stop early, and it cancels the
    task of a client that left (Django calls it in a thread, before the
    request is finished, so the cancel is done when the server moves on)."""

    def __init__(self, accepted: _Accepted) -> None:
        self._accepted = accepted
        self._progress = _StreamProgress()
        super().__init__(_event_stream(accepted, self._progress), content_type="text/event-stream")
        self["Cache-Control"] = "no-cache"

    def close(self) -> None:
        super().close()
        if not self._progress.settled and not self._accepted.keep_on_disconnect:
            cancel_task(self._accepted.task)


@dataclass
class _StreamProgress:
    # The task's end was sent, or this stream has already given the task up:
    # closing the response has nothing left to cancel.
    settled: bool = False


async def _event_stream(accepted: _Accepted, progress: _StreamProgress) -> AsyncGenerator[bytes, None]:
    """The frames of the stream; one cut off by the client leaves
    ``progress.settled`` false, so that closing the response cancels the task."""
    completion = accepted.completion
    sent_text = False
    # First, at once: the role (chat), or a comment (text completions have no
    # opening chunk), so the client sees the stream open before the first token.
    opening = completion.opening_chunk()
    yield KEEP_ALIVE_FRAME if opening is None else frame(opening)
    async with aclosing(follow(accepted.task.id, accepted.cipher)) as events:
        async for event in events:
            if isinstance(event, Idle):
                yield KEEP_ALIVE_FRAME
            elif isinstance(event, Text):
                sent_text = True
                yield frame(completion.text_chunk(event.text))
            elif isinstance(event, Restarted):
                if sent_text:
                    # Text already sent cannot be taken back, and the new attempt
                    # writes it all again: this stream cannot go on truthfully.
                    message = (
                        f"the generation restarted (attempt {event.attempt}) after text was sent; "
                        f"the task's result will be at GET /api/v1/tasks/{accepted.task.id}"
                    )
                    # Given up before the client reads the error, as on a disconnect.
                    await _abandon(accepted)
                    progress.settled = True
                    yield frame(error_body(500, "generation_restarted", message))
                    return
            elif isinstance(event, Ended):
                progress.settled = True
                if event.status != TaskState.SUCCEEDED:
                    yield frame(_failure_body(event)[1])
                    return
                if event.output and not sent_text:  # the log lost the chunks; the row has the text
                    yield frame(completion.text_chunk(event.output))
                yield frame(completion.closing_chunk(event.usage))
                if completion.include_usage:
                    yield frame(completion.usage_chunk(event.usage))
                yield DONE_FRAME

