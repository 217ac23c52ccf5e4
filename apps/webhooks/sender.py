"""Sending one webhook request: the address check, the signature, the HTTP POST.

The receiver is the outside world: a callback URL chosen by a tenant must not
reach the platform's own network (the database, Redis, a cloud metadata
service). Its host is resolved and every address checked with the adapters'
``resolve_upstream`` under WEBHOOKS_ALLOW_PRIVATE, at submission and again
here at each attempt; the request then goes to the address checked, never to
the name looked up again (DNS rebinding), with the name kept for the Host
header and TLS (SNI and certificate check). Redirects are not followed: a 3xx
is a failed attempt.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from apps.catalog.adapters import UpstreamRefused, resolve_upstream
from apps.core import version
from apps.core.errors import InvalidInput
from apps.core.secrets import hmac_sha256

ALLOW_SETTING = "WEBHOOKS_ALLOW_PRIVATE"
USER_AGENT = f"LLMAgentOS-Webhooks/{version.VERSION}"

# Headers of every delivery (docs/api.md "Webhooks").
EVENT_ID_HEADER = "X-LLMAgentOS-Event-Id"
EVENT_TYPE_HEADER = "X-LLMAgentOS-Event-Type"
TIMESTAMP_HEADER = "X-LLMAgentOS-Timestamp"
SIGNATURE_HEADER = "X-LLMAgentOS-Signature"
ATTEMPT_HEADER = "X-LLMAgentOS-Delivery-Attempt"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the receiver's status, or why there was none."""

    status_code: int | None
    error: str = ""
    permanent: bool = False  # no later attempt can succeed (the address is refused)
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``: what a receiver recomputes."""
    return "sha256=" + hmac_sha256(secret, f"{timestamp}.".encode() + body)


def parse_url(url: str, param: str) -> httpx.URL:
    """``url`` as a callback the platform may POST to (its shape; not yet its address)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise InvalidInput("not a valid URL", code="invalid_webhook_url", param=param) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput("must be an http or https URL with a host", code="invalid_webhook_url", param=param)
    if parsed.fragment:
        raise InvalidInput("must not have a #fragment", code="invalid_webhook_url", param=param)
    return parsed


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def check_url(url: str, param: str) -> None:
    """Refuse (400 naming ``param``) a callback URL on a non-public address, unless
    WEBHOOKS_ALLOW_PRIVATE. A name that does not resolve from here now passes:
    each delivery checks it again."""
    parsed = parse_url(url, param)
    try:
        resolve_upstream(parsed.host, _port(parsed), setting=ALLOW_SETTING, what="callback URLs")
    except UpstreamRefused as exc:
        raise InvalidInput(str(exc), code="webhook_url_refused", param=param) from None
    except OSError:
        pass


@functools.cache
def _client(timeout: float) -> httpx.Client:
    # One pool per process (and timeout): a TLS context costs ~0.4 s to build.
    # trust_env off: a proxy from the environment would connect by name, past the check.
    return httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False)


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST ``body`` to ``url``, trying each address its host resolves to (all checked)."""
    started = time.monotonic()

    def outcome(status_code: int | None, error: str = "", permanent: bool = False) -> Outcome:
        return Outcome(status_code, error, permanent, int((time.monotonic() - started) * 1000))

    try:
        parsed = parse_url(url, "url")
    except InvalidInput as exc:
        return outcome(None, exc.message, permanent=True)
    try:
        addresses = resolve_upstream(parsed.host, _port(parsed), setting=ALLOW_SETTING, what="callback URLs")
    except UpstreamRefused as exc:
        return outcome(None, str(exc), permanent=True)
    except OSError as exc:
        return outcome(None, f"{parsed.host} does not resolve: {exc}")
    sent_headers = {
        **headers,
        "Host": parsed.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    client = _client(settings.WEBHOOK_TIMEOUT_SECONDS)
    error = f"{parsed.host} has no address"
    for address in addresses:
        try:
            with client.stream(
                "POST", parsed.copy_with(host=address), content=body, headers=sent_headers,
                extensions={"sni_hostname": parsed.host},
            ) as response:
                # The answer's body is not read: only its status counts, and a
                # receiver must not be able to make the sender read megabytes.
                status = response.status_code
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            error = f"{type(exc).__name__}: {exc}"
            continue  # the next address, if any
        except httpx.HTTPError as exc:
            return outcome(None, f"{type(exc).__name__}: {exc}")
        return outcome(status, "" if 200 <= status < 300 else f"HTTP {status}")
    return outcome(None, error)
