"""Typed readers of the environment, for llmagentos/settings.py.

Every setting the environment can change is read through one of these, so a
malformed value stops start-up with one line naming the variable, the value
and the form expected::

    ImproperlyConfigured: WORKER_HEARTBEAT_SECONDS='abc': expected a number of seconds

instead of a bare ``ValueError`` from deep inside ``float()``, or a setting
that silently means something other than what the operator wrote.

An unset variable and an empty one both give the default (an empty value is
what ``VAR= make run`` or a blank entry in an env file leaves), except for
``string``, which returns whatever is there, ``comma_list``, for which a set
but empty value is the empty list, and ``url``, for which it is "" (no URL:
``RATE_LIMIT_REDIS_URL=`` keeps rate limits in the database even with a
REDIS_URL). Surrounding whitespace is ignored by every reader but ``string``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Collection
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


# The password of a URL's user part (postgres://user:PASSWORD@host/…), which an
# error message must not carry into logs.
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:]*):[^/@]*@")


def malformed(name: str, value: str | None, expected: str) -> ImproperlyConfigured:
    """The error for ``name`` holding ``value`` instead of ``expected``.

    ``value`` None: a secret, never shown; a URL's password is masked.
    """
    shown = "<hidden>" if value is None else repr(_URL_PASSWORD.sub(r"\1:***@", value))
    return ImproperlyConfigured(f"{name}={shown}: expected {expected}")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def string(name: str, default: str = "") -> str:
    """The value as it is (an empty value stays empty)."""
    return os.environ.get(name, default)


def parsed(name: str, parse: Callable[[str], T], expected: str) -> T | None:
    """``parse(value)``, or None when ``name`` is unset or empty.

    ``parse`` signals a malformed value by raising ValueError (which
    ``int``, ``float``, ``json.loads`` and URL parsers already do); the error
    becomes an ImproperlyConfigured naming ``name``, the value and ``expected``.
    """
    raw = os.environ.get(name, "")
    if not raw.strip():
        return None
    try:
        return parse(raw.strip())
    except ValueError:
        raise malformed(name, raw, expected) from None


def choice(name: str, default: str, choices: Collection[str]) -> str:
    """One of ``choices``, spelled exactly."""

    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(raw)
        return raw

    value = parsed(name, parse, "one of " + ", ".join(repr(c) for c in choices))
    return default if value is None else value


def boolean(name: str, default: bool = False) -> bool:
    """1/true/yes/on or 0/false/no/off, in any case."""

    def parse(raw: str) -> bool:
        word = raw.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(raw)

    value = parsed(name, parse, "1 or 0 (also true/false, yes/no, on/off)")
    return default if value is None else value


def _at_least(minimum: float | None, expected: str) -> str:
    return expected if minimum is None else f"{expected} (at least {minimum:g})"


def integer(name: str, default: int, *, minimum: int | None = None, expected: str = "an integer") -> int:
    """A whole number (``minimum`` or more, when given)."""

    def parse(raw: str) -> int:
        value = int(raw)
        if minimum is not None and value < minimum:
            raise ValueError(raw)
        return value

    value = parsed(name, parse, _at_least(minimum, expected))
    return default if value is None else value


@overload
def number(name: str, default: float, *, minimum: float | None = ..., expected: str = ...) -> float: ...
@overload
def number(name: str, default: None, *, minimum: float | None = ..., expected: str = ...) -> float | None: ...
def number(
    name: str, default: float | None, *, minimum: float | None = None, expected: str = "a number"
) -> float | None:
    """A finite decimal number (``minimum`` or more, when given); ``default`` None: None when unset."""

    def parse(raw: str) -> float:
        value = float(raw)
        # float() accepts "nan" and "inf"; no duration or threshold here means either.
        if not math.isfinite(value) or (minimum is not None and value < minimum):
            raise ValueError(raw)
        return value

    value = parsed(name, parse, _at_least(minimum, expected))
    return default if value is None else value


SECONDS = "a number of seconds"


def seconds(name: str, default: float) -> float:
    """A duration: a number of seconds, zero or more (fractions allowed)."""
    return number(name, default, minimum=0, expected=SECONDS)


def whole_seconds(name: str, default: int) -> int:
    """A duration in whole seconds, zero or more."""
    return integer(name, default, minimum=0, expected="a whole number of seconds")


def comma_list(name: str, default: str = "") -> list[str]:
    """Comma-separated items, each stripped; empty items dropped (a set but empty value: none)."""
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def url(name: str, schemes: Collection[str], example: str, default: str = "") -> str:
    """A URL with one of ``schemes`` (and a numeric port, if it has one), as it is written.

    Unset: ``default``; set but empty: "" (no URL).
    """
    if os.environ.get(name) is None:
        return default

    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError(raw)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        return raw

    value = parsed(name, parse, f"a URL such as {example}")
    return "" if value is None else value


def json_value(name: str, default: str, *, valid: Callable[[Any], bool], expected: str) -> Any:
    """The JSON document in ``name`` (else ``default``, itself JSON), which ``valid`` must accept."""

    def parse(raw: str) -> Any:
        value = json.loads(raw)  # json.JSONDecodeError is a ValueError
        if not valid(value):
            raise ValueError(raw)
        return value

    value = parsed(name, parse, expected)
    return json.loads(default) if value is None else value
