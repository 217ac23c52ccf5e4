"""The model adapter contract (public plugin API).

An adapter turns one generation request into a stream: zero or more
``TextChunk`` items, then exactly one ``Usage`` as the last item. It may be
asked to ``cancel`` a request it is streaming (from another thread); it then
stops early and still ends with ``Usage``. Errors are ``AdapterError``; a
``permanent`` one fails the task, any other is retried up to the platform's
attempt limit. Everything else in the platform is private to it.

An adapter may declare ``can_suspend``: ``suspend`` then asks a running
stream (from another thread) to stop at its next token boundary and end with
one ``Suspended`` item, instead of ``Usage``, carrying a JSON-safe checkpoint;
a later ``stream`` of a request whose ``resume`` holds that checkpoint goes on
where it stopped: it yields only the text after it, and its ``Usage`` counts
the whole generation (the original prompt, every completion token of every
segment), so the task is charged once. The resumed text must equal what the
uninterrupted stream would have produced for greedy decoding and for sampling
with a seed. A cancel wins over a suspend (the stream then ends with
``Usage``), and a stream that finishes before it reaches a boundary just ends
with ``Usage``. docs/plugins.md says how to implement it.

An adapter that reaches a remote server checks the server's addresses with
``resolve_upstream`` (at configuration and at every connection): loopback,
private and other non-public addresses are refused unless the operator
allows them (settings.ALLOW_PRIVATE_UPSTREAMS).
"""

from __future__ import annotations

import ipaddress
import socket
from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class Resume:
    """Where a suspended generation of this request stopped (see ``Suspended``).

    ``text``: everything the earlier segments streamed (already delivered: the
    resumed stream yields only what comes after it). ``checkpoint``: what the
    adapter's ``Suspended`` item held, as it gave it. ``completion_tokens``:
    the tokens generated before the suspension (the same as ``Suspended``'s).
    """

    text: str
    checkpoint: dict[str, Any]
    completion_tokens: int


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt: str | None
    messages: tuple[ChatMessage, ...] | None
    max_tokens: int  # of the whole generation, resumed segments included
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    priority: str = "normal"
    resume: Resume | None = None  # set when a suspended generation goes on (can_suspend adapters only)


@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Suspended:
    """The last item of a stream that was suspended at a token boundary (instead of ``Usage``).

    ``checkpoint``: JSON-safe values (str, int, float, bool, None, lists, dicts)
    the adapter needs to go on, handed back in ``GenerationRequest.resume``;
    the platform stores it encrypted with the tenant's key (it may hold
    generated tokens). Anything held only in memory (a KV cache) is the
    adapter's to find again by a key in the checkpoint, and to do without when
    the generation resumes elsewhere or later. ``completion_tokens``: tokens
    generated so far, over every segment.
    """

    checkpoint: dict[str, Any]
    completion_tokens: int


# What ``stream`` returns: a generator (write it with ``yield``), not any
# iterator. The runtime closes it when a task ends early, which runs the
# adapter's ``finally`` blocks then rather than whenever it is collected.
TokenStream = Generator[TextChunk | Usage | Suspended, None, None]


@dataclass(frozen=True)
class ResourceNeeds:
    device: str = "cpu"  # "cpu" or "gpu"
    gpu_memory_bytes: int = 0


class AdapterError(Exception):
    """A generation failed. ``permanent=True``: retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class AdapterConfigError(ValueError):
    """A model's adapter_config is unusable; names the key at fault."""

    key: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


class ModelAdapter(ABC):
    """Base class of every adapter. Subclasses set ``name`` and implement ``stream``."""

    name: ClassVar[str]
    # Whether ``suspend`` works (see the module docstring): the scheduler preempts
    # and time-slices only the generations of adapters that say so.
    can_suspend: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], plugin_settings: dict[str, Any]) -> None:
        self.config = config
        self.plugin_settings = plugin_settings

    def resources(self) -> ResourceNeeds:
        return ResourceNeeds()

    # load, cancel and unload are optional hooks, not abstract: an adapter with
    # nothing to load or free (echo) inherits these no-ops.
    def load(self, device: str = "cpu") -> None:  # noqa: B027 - optional hook, see above
        """Bring the model onto ``device``; called once before the first stream."""

    @abstractmethod
    def stream(self, request: GenerationRequest) -> TokenStream:
        """Yield text chunks as they are generated, then one Usage."""

    def cancel(self, request_id: str) -> None:  # noqa: B027 - optional hook
        """Ask a running ``stream`` for ``request_id`` to stop early (thread-safe)."""

    def suspend(self, request_id: str) -> None:  # noqa: B027 - optional hook
        """Ask a running ``stream`` for ``request_id`` to stop at its next token boundary
        and end with ``Suspended`` (thread-safe). Called only when ``can_suspend``."""

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Release what ``load`` took."""

    def health(self) -> bool:
        return True

    def count_prompt_tokens(self, prompt: str | None, messages: Sequence[ChatMessage] | None) -> int | None:
        """The prompt's token count as ``stream`` will report it in ``Usage.prompt_tokens``,
        or None: this adapter cannot tell before the model has seen it (the default).

        The platform reserves a task's budget by it before the task is queued
        (prompt count + max_tokens), so it is called in the API process, on
        an instance that was created but never loaded, from many threads at
        once. It may read what counting needs (a tokenizer) and keep it, but
        must never load weights. Exactly one of ``prompt`` and ``messages``
        is given, as in ``GenerationRequest``. The task is charged what
        ``Usage`` reports, whatever this said.
        """
        return None


# --- Remote servers: which addresses an adapter may reach ---------------------------------
#
# A model's remote (an OpenAI-compatible base_url) is chosen by an operator, but
# tasks reach it on tenants' behalf: pointed at the platform's own network
# (the database, Redis, a cloud metadata service at 169.254.169.254) it would
# let a model configuration probe it. Addresses that are not public are refused
# unless settings.ALLOW_PRIVATE_UPSTREAMS (true in the local profile, where the
# remote is usually on the same machine; false in production). The check runs
# on every address a host resolves to, and again at each connection, on the
# address then connected to: a name that resolved to a public address when the
# model was registered may resolve to another later (DNS rebinding).


class UpstreamRefused(Exception):
    """A remote server's address that adapters may not reach; the message says which and why."""


def refused_reason(address: str) -> str | None:
    """Why adapters may not reach ``address`` (an IP address), or None: it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0") is no part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    # Most specific first: Python counts loopback, link-local and reserved ranges as private too.
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not ip.is_global:  # e.g. shared address space (100.64.0.0/10), documentation ranges
        return "not a public address"
    return None


def resolve_upstream(
    host: str, port: int, *, setting: str = "ALLOW_PRIVATE_UPSTREAMS", what: str = "remote models"
) -> list[str]:
    """The IP addresses to connect to for ``host``: all it resolves to, each checked.

    Raises UpstreamRefused when any of them is not public (unless the operator
    allows private addresses with the boolean ``setting``; ``what`` names the
    servers in the message), OSError when ``host`` does not resolve.
    Connect only to the addresses returned, never to ``host`` by name again:
    a second lookup may answer differently. (The platform's webhooks reuse it,
    with WEBHOOKS_ALLOW_PRIVATE: apps.webhooks.sender.)
    """
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not getattr(settings, setting):
        for address in addresses:
            reason = refused_reason(address)
            if reason is not None:
                shown = host if host == address else f"{host} (resolved to {address})"
                raise UpstreamRefused(
                    f"{shown} is {reason}; {what} must be on public addresses "
                    f"unless the operator sets {setting}=true"
                )
    return addresses
