"""Adapter for a remote OpenAI-compatible endpoint (a vLLM server, a hosted API).

One ``httpx.Client`` per adapter instance: its connection pool is shared by
every request the worker's threads stream through this adapter. Each request
POSTs ``stream: true`` to ``{base_url}/chat/completions`` or
``{base_url}/completions`` and turns the Server-Sent Events into TextChunks.

Failures before the first chunk was yielded (connection errors, timeouts, 408,
429, 5xx, a stream that breaks before any text) are retried here with
exponential back-off, honouring Retry-After up to ``max_retry_wait``. After the
first chunk nothing is retried here (the platform restarts the whole attempt
instead), so a chunk is never emitted twice. Other 4xx answers mean the request
itself is wrong: ``AdapterError(permanent=True)``.

What the remote says about an error (its body, an error event, a malformed
event, a redirect's target) goes to the operator's log, never into the task's
error: the tenant sees the status and a generic message. The remote's
addresses are checked (apps.catalog.adapters.resolve_upstream) when the
adapter is configured and at every connection, which goes to the address
checked, never to the name looked up again; so the remote is reached directly,
not through an HTTP(S)_PROXY from the environment.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import logging
import math
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from apps.catalog.adapters import (
    AdapterConfigError,
    AdapterError,
    GenerationRequest,
    ModelAdapter,
    TextChunk,
    TokenStream,
    UpstreamRefused,
    Usage,
    resolve_upstream,
)

logger = logging.getLogger(__name__)

# Plugin-level defaults (PluginConfig.default_settings); a model's adapter_config
# overrides any of them for that model.
DEFAULT_SETTINGS: dict[str, float | int] = {
    "connect_timeout": 5.0,  # seconds to open a connection
    "read_timeout": 60.0,  # seconds of silence allowed between stream events
    "max_retries": 2,  # retries after the first try, before the first chunk only
    "retry_backoff": 0.5,  # seconds before the first retry; doubles each retry
    "max_retry_wait": 30.0,  # cap on any wait between tries, Retry-After included
}

ENDPOINTS = {"chat": "/chat/completions", "completions": "/completions"}

# Keys the adapter sets on every request; extra_body may not override them, because
# the stream parser, the usage accounting and the platform's token reservation rely
# on them.
RESERVED_BODY_KEYS = frozenset({"model", "stream", "stream_options", "messages", "prompt", "max_tokens"})

# 408 and 429 are the remote asking us to come back later; other 4xx mean this
# request is wrong and will stay wrong.
RETRYABLE_STATUSES = frozenset({408, 429})

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_MESSAGE_LIMIT = 300  # characters of a remote error message we log
_ERROR_BODY_LIMIT = 16_384  # bytes of an error response we read to find its message
CHARS_PER_TOKEN = 4  # the usual estimate for English text when the remote sends no usage


@dataclass(frozen=True)
class _Options:
    base_url: httpx.URL
    model: str
    api_key: str | None = field(repr=False)
    endpoint: str | None  # None: chat for messages, completions for a prompt
    connect_timeout: float
    read_timeout: float
    max_retries: int
    retry_backoff: float
    max_retry_wait: float
    extra_body: Mapping[str, Any]


@dataclass
class _LiveRequest:
    """What cancel() needs to reach a running stream; guarded by the adapter's lock."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    response: httpx.Response | None = None


class _TryFailed(Exception):
    """One try at the remote failed; ``retryable`` says whether another try may help.

    The message may reach the tenant (the task's error); ``detail``, what the
    remote said, goes to the operator's log only.
    """

    def __init__(
        self, message: str, *, retryable: bool, retry_after: float | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.detail = detail


class OpenAICompatibleAdapter(ModelAdapter):
    name = "openai_compatible"
    # A remote server's generation cannot be paused and resumed from outside, so it is never preempted.
    can_suspend = False

    def __init__(self, config: dict[str, Any], plugin_settings: dict[str, Any]) -> None:
        super().__init__(config, plugin_settings)
        self._options = _parse_options(config, plugin_settings)
        # The endpoints' URLs, built once rather than copied from base_url on every request.
        self._urls = {name: _endpoint_url(self._options.base_url, path) for name, path in ENDPOINTS.items()}
        self._live: dict[str, _LiveRequest] = {}
        self._lock = threading.Lock()
        self._warned_no_usage = False
        self._client = self._new_client()

    # --- lifecycle ------------------------------------------------------------------------

    def load(self, device: str = "cpu") -> None:
        # Nothing to load: the remote holds the model. Re-open the pool after unload().
        if self._client.is_closed:
            self._client = self._new_client()

    def unload(self) -> None:
        self._client.close()

    def health(self) -> bool:
        """The remote answers its model list with 2xx (vLLM and hosted APIs both serve it)."""
        try:
            response = self._client.get(
                _endpoint_url(self._options.base_url, "/models"),
                timeout=httpx.Timeout(self._options.connect_timeout),
            )
        except (httpx.HTTPError, UpstreamRefused):
            return False
        return response.is_success

    def _new_client(self) -> httpx.Client:
        options = self._options
        headers = {"User-Agent": "llmagentos-openai-compatible/1.0"}
        if options.api_key:
            headers["Authorization"] = f"Bearer {options.api_key}"
        return httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(
                connect=options.connect_timeout,
                # httpx's read timeout bounds each socket read: exactly "silence between events".
                read=options.read_timeout,
                write=options.read_timeout,
                pool=options.connect_timeout,
            ),
            # The worker's slot count already bounds concurrency; a pool limit would
            # only add a second, hidden queue in front of the remote.
            transport=_CheckedTransport(
                _ssl_context(), httpx.Limits(max_connections=None, max_keepalive_connections=20)
            ),
            follow_redirects=False,
        )

    # --- streaming ------------------------------------------------------------------------

    def stream(self, request: GenerationRequest) -> TokenStream:
        endpoint, body = self._build_body(request)
        url = self._urls[endpoint]
        live = _LiveRequest()
        with self._lock:
            self._live[request.request_id] = live
        chunks = 0
        remote_usage: Usage | None = None
        try:
            for attempt in range(self._options.max_retries + 1):
                if live.cancelled.is_set():
                    break
                try:
                    with contextlib.closing(self._one_try(url, endpoint, body, live)) as items:
                        for item in items:
                            if live.cancelled.is_set():
                                break  # text already buffered is not worth a cancelled task's time
                            if isinstance(item, Usage):
                                remote_usage = item
                            else:
                                chunks += 1
                                yield item
                    break
                except _TryFailed as failure:
                    if live.cancelled.is_set():
                        break  # the failure is our own cancel closing the stream
                    message = self._redact(str(failure))
                    if failure.detail:
                        logger.warning("openai_compatible %s: %s: %s", self._options.model, message,
                                       self._redact(failure.detail))
                    if chunks:
                        raise AdapterError(f"the remote stream failed after {chunks} chunks: {message}") from None
                    if not failure.retryable:
                        raise AdapterError(message, permanent=True) from None
                    if attempt == self._options.max_retries:
                        raise AdapterError(f"{message} (after {attempt + 1} tries)") from None
                    wait = self._retry_wait(attempt, failure.retry_after)
                    logger.warning("openai_compatible %s: try %d failed (%s); retrying in %.2f s",
                                   self._options.model, attempt + 1, message, wait)
                    if live.cancelled.wait(wait):
                        break
            if remote_usage is not None:
                yield remote_usage
            else:
                yield self._estimated_usage(request, chunks, cancelled=live.cancelled.is_set())
        finally:
            with self._lock:
                if self._live.get(request.request_id) is live:
                    del self._live[request.request_id]

    def cancel(self, request_id: str) -> None:
        """Stop the stream of ``request_id`` now; a no-op when it is not streaming here."""
        with self._lock:
            live = self._live.get(request_id)
            if live is None:
                return
            live.cancelled.set()
            if live.response is not None:
                # Under the lock: the streaming thread detaches the response under the
                # same lock before the connection can go back to the pool, so this never
                # touches a connection another request is using.
                _interrupt(live.response)

    def _one_try(
        self, url: httpx.URL, endpoint: str, body: dict[str, Any], live: _LiveRequest
    ) -> TokenStream:
        """One POST; yields the text chunks and the remote's Usage (if it sent one)."""
        try:
            request = self._client.build_request("POST", url, json=body, headers={"Accept": "text/event-stream"})
            response = self._client.send(request, stream=True)
        except httpx.RequestError as exc:
            raise self._transport_failure(exc) from None
        except UpstreamRefused as exc:
            raise _TryFailed("the platform refuses this model's remote address", retryable=False,
                             detail=str(exc)) from None
        with self._lock:
            live.response = response
        try:
            if live.cancelled.is_set():
                return  # cancelled while waiting for the response headers
            _check_status(response)
            yield from _parse_stream(response, endpoint)
        except httpx.RequestError as exc:
            raise self._transport_failure(exc) from None
        finally:
            with self._lock:
                live.response = None
            response.close()

    def _transport_failure(self, exc: httpx.RequestError) -> _TryFailed:
        if isinstance(exc, httpx.ConnectTimeout):
            message = f"could not connect within connect_timeout={self._options.connect_timeout:g} s"
        elif isinstance(exc, httpx.ReadTimeout):
            message = f"the remote sent nothing for read_timeout={self._options.read_timeout:g} s"
        else:
            message = f"the connection to the remote failed ({type(exc).__name__}: {exc})"
        return _TryFailed(message, retryable=True)

    def _build_body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        endpoint = self._options.endpoint or ("chat" if request.messages is not None else "completions")
        body: dict[str, Any] = dict(self._options.extra_body)
        body.update(
            model=self._options.model,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=request.max_tokens,
        )
        if endpoint == "chat":
            if request.messages is not None:
                body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            else:
                # A chat-only remote (most hosted APIs) still serves prompt tasks: the
                # prompt becomes one user message, formatted by the remote's chat template.
                body["messages"] = [{"role": "user", "content": request.prompt or ""}]
        elif request.messages is not None:
            # Flattening messages into one prompt here would bypass the model's chat
            # template and silently change its behaviour; refuse instead.
            raise AdapterError(
                "this model is configured for the completions endpoint and takes a prompt, not messages",
                permanent=True,
            )
        else:
            body["prompt"] = request.prompt or ""
        # A task's own sampling settings win over the model's extra_body defaults.
        for key in ("temperature", "top_p", "seed"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        if request.stop:
            body["stop"] = list(request.stop)
        return endpoint, body

    def _retry_wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._options.max_retry_wait)
        delay = min(self._options.retry_backoff * 2**attempt, self._options.max_retry_wait)
        # Equal jitter: threads that failed together do not all come back together.
        return delay / 2 + random.uniform(0, delay / 2)

    def _estimated_usage(self, request: GenerationRequest, chunks: int, *, cancelled: bool) -> Usage:
        """Usage when the remote sent none: one token per chunk, prompt chars / 4."""
        if not cancelled and not self._warned_no_usage:
            # Once per adapter: the operator should know the bill is an estimate.
            self._warned_no_usage = True
            logger.warning("openai_compatible %s: the remote sent no usage; estimating token counts",
                           self._options.model)
        if request.messages is not None:
            prompt_chars = sum(len(m.content) for m in request.messages)
        else:
            prompt_chars = len(request.prompt or "")
        return Usage(prompt_tokens=math.ceil(prompt_chars / CHARS_PER_TOKEN), completion_tokens=chunks)

    def _redact(self, text: str) -> str:
        """Remotes sometimes echo the key they rejected; it must never reach a task's error."""
        key = self._options.api_key
        return text.replace(key, "[redacted]") if key else text


# --- the wire format -----------------------------------------------------------------------


def _check_status(response: httpx.Response) -> None:
    """Raise _TryFailed unless ``response`` is a 2xx event stream."""
    status = response.status_code
    if response.is_success:
        if response.headers.get("content-type", "").startswith("application/json"):
            raise _TryFailed("the remote answered with one JSON document, not an event stream", retryable=False)
        return
    message = f"the remote answered {status}"
    detail = _error_message(response)
    if response.is_redirect:
        message += " (a redirect: the model's base_url needs fixing)"
        detail += f" (redirected to {response.headers.get('location', '?')})"
    retryable = status in RETRYABLE_STATUSES or status >= 500
    raise _TryFailed(
        message, retryable=retryable, retry_after=_retry_after(response.headers) if retryable else None, detail=detail
    )


def _error_message(response: httpx.Response) -> str:
    """The remote's own explanation, short: OpenAI, vLLM and FastAPI shapes, else the text."""
    raw = b""
    for part in response.iter_bytes():
        raw += part
        if len(raw) >= _ERROR_BODY_LIMIT:
            break
    text = raw[:_ERROR_BODY_LIMIT].decode("utf-8", errors="replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and error.get("message"):
            text = str(error["message"])
        elif isinstance(error, str):
            text = error
        elif document.get("message"):
            text = str(document["message"])
        elif document.get("detail"):
            text = str(document["detail"])
    text = " ".join(text.split()) or response.reason_phrase or "no message"
    return text if len(text) <= _ERROR_MESSAGE_LIMIT else text[: _ERROR_MESSAGE_LIMIT - 1] + "…"


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the remote asked us to wait: retry-after-ms (OpenAI), Retry-After seconds or date."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            value = float(milliseconds) / 1000
        except ValueError:
            value = -1
        if value >= 0 and math.isfinite(value):
            return value
    retry_after = headers.get("retry-after")
    if not retry_after:
        return None
    try:
        value = float(retry_after)
        return value if value >= 0 and math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        return None
    return max(0.0, when.timestamp() - time.time())


def _parse_stream(response: httpx.Response, endpoint: str) -> Iterator[TextChunk | Usage]:
    """Text chunks of one completion stream, and the remote's Usage if it sends one."""
    usage: Usage | None = None
    finished = False
    for data in sse_data(response.iter_lines()):
        if data == "[DONE]":
            break
        try:
            event = json.loads(data)
        except ValueError:
            raise _TryFailed("the remote sent a malformed event", retryable=True, detail=repr(data[:80])) from None
        if not isinstance(event, dict):
            raise _TryFailed("the remote sent a malformed event", retryable=True, detail=repr(data[:80]))
        if event.get("error"):
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise _TryFailed("the remote reported an error mid-stream", retryable=True,
                             detail=str(message)[:_ERROR_MESSAGE_LIMIT])
        usage = _usage(event.get("usage")) or usage
        choices = event.get("choices")
        if not choices or not isinstance(choices[0], dict):
            continue  # e.g. the final usage-only event
        choice = choices[0]
        if endpoint == "chat":
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
        else:
            text = choice.get("text")
        if isinstance(text, str) and text:
            yield TextChunk(text)
        if choice.get("finish_reason"):
            finished = True
    else:
        # The body ended without [DONE]. A finish_reason means the generation did end
        # (some servers omit [DONE]); without one the stream was cut short.
        if not finished:
            raise _TryFailed("the remote ended the stream before the generation finished", retryable=True)
    if usage is not None:
        yield usage


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The data of each Server-Sent Event in ``lines`` (without line endings).

    Per the SSE format: an event ends at a blank line; its ``data:`` lines are
    joined with newlines; comments (``:``) and other fields are ignored.
    """
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int) and prompt >= 0 and completion >= 0:
        return Usage(prompt_tokens=prompt, completion_tokens=completion)
    return None


def _interrupt(response: httpx.Response) -> None:
    """Wake the thread blocked reading ``response`` at once.

    Closing the socket from another thread does not interrupt a blocked read on
    Linux; shutting it down does: the reader sees end-of-stream immediately. The
    reading thread then closes the response itself, which discards the connection.
    """
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is None:
        return  # not an HTTP/1.1 socket stream: the cancel takes effect at the next event
    try:
        # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops the TLS
        # state under the reader's feet instead of just ending the stream.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the remote: the reader is waking up anyway


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every adapter in the process.

    Building one loads the CA bundle (~0.4 s here); adapters are created under the
    platform's adapter lock, so a context per adapter would stall task starts.
    SSLContext is safe to share between threads.
    """
    return httpx.create_ssl_context()


class _CheckedBackend(httpcore.NetworkBackend):
    """Opens connections only to addresses resolve_upstream allows, checked at
    each connection, and connects to the address checked (TLS still verifies
    the host name: httpcore passes it as the server name)."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve_upstream(host, port)  # UpstreamRefused goes up as it is
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's transport over a pool whose connections go through _CheckedBackend."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits)
        # httpx 0.28 cannot hand its pool a network backend; httpcore's pool
        # (pinned in requirements.txt) takes one. The rest of the transport is httpx's.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(),
        )


def _endpoint_url(base_url: httpx.URL, suffix: str) -> httpx.URL:
    # Keep any query (e.g. an api-version) and append to the base path, as OpenAI clients do.
    return base_url.copy_with(path=base_url.path.rstrip("/") + suffix)


# --- configuration ---------------------------------------------------------------------------


def _parse_options(config: Mapping[str, Any], plugin_settings: Mapping[str, Any]) -> _Options:
    base_url = _base_url(config.get("base_url"))

    model = config.get("model")
    if not isinstance(model, str) or not model.strip():
        raise AdapterConfigError("model", "required: the model name the remote serves")

    api_key_env = config.get("api_key_env")
    api_key: str | None = None
    if api_key_env is not None:
        if not isinstance(api_key_env, str) or not _ENV_NAME.match(api_key_env):
            raise AdapterConfigError(
                "api_key_env", "must be the NAME of an environment variable holding the key, not the key"
            )
        # Read once: a process's environment cannot change from outside, so rotating
        # the key means restarting the workers anyway.
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise AdapterConfigError("api_key_env", f"the environment variable {api_key_env} is not set")

    endpoint = config.get("endpoint")
    if endpoint is not None and endpoint not in ENDPOINTS:
        raise AdapterConfigError("endpoint", f"must be one of {sorted(ENDPOINTS)} (or absent)")

    extra_body = config.get("extra_body", {})
    if not isinstance(extra_body, dict):
        raise AdapterConfigError("extra_body", "must be a JSON object")
    reserved = sorted(RESERVED_BODY_KEYS & set(extra_body))
    if reserved:
        raise AdapterConfigError("extra_body", f"may not set {', '.join(reserved)}: the adapter sets them")

    return _Options(
        base_url=base_url,
        model=model,
        api_key=api_key,
        endpoint=endpoint,
        connect_timeout=_number("connect_timeout", config, plugin_settings, positive=True),
        read_timeout=_number("read_timeout", config, plugin_settings, positive=True),
        max_retries=int(_number("max_retries", config, plugin_settings, integer=True)),
        retry_backoff=_number("retry_backoff", config, plugin_settings),
        max_retry_wait=_number("max_retry_wait", config, plugin_settings),
        extra_body=dict(extra_body),
    )


def _base_url(value: Any) -> httpx.URL:
    reason = "required: the remote's http(s) URL up to the API version, e.g. http://vllm:8000/v1"
    if not isinstance(value, str) or not value:
        raise AdapterConfigError("base_url", reason)
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise AdapterConfigError("base_url", f"not a valid URL; {reason}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise AdapterConfigError("base_url", f"must be an http or https URL with a host; {reason}")
    if url.userinfo:
        # adapter_config is shown in the admin: a credential here would be on display.
        raise AdapterConfigError("base_url", "must not contain credentials; put the key in api_key_env")
    if url.fragment:
        raise AdapterConfigError("base_url", "must not have a #fragment")
    try:
        resolve_upstream(url.host, url.port or (443 if url.scheme == "https" else 80))
    except UpstreamRefused as exc:
        raise AdapterConfigError("base_url", str(exc)) from None
    except OSError:
        pass  # does not resolve from here (now): each connection checks it again anyway
    return url


def _number(
    key: str,
    config: Mapping[str, Any],
    plugin_settings: Mapping[str, Any],
    *,
    positive: bool = False,
    integer: bool = False,
) -> float:
    """``key`` from the model's config, else the plugin settings, else the built-in default."""
    value = config.get(key, plugin_settings.get(key, DEFAULT_SETTINGS[key]))
    # bool is an int subclass; "true" as a timeout is a mistake, not 1 second.
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if valid and integer:
        valid = isinstance(value, int) or float(value).is_integer()
    if valid:
        valid = value > 0 if positive else value >= 0
    if not valid:
        kind = "a whole number" if integer else "a number"
        raise AdapterConfigError(key, f"must be {kind} {'> 0' if positive else '>= 0'}")
    return float(value)
