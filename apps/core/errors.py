"""Typed domain errors: what a service refuses, and why, without any HTTP.

Services raise these; ``llmagentos.api_errors`` alone maps each *kind* below
to a status code and headers, for /api/v1 and /v1 alike. An app defines its
own errors as subclasses of a kind when it needs extra data (a budget
refusal carries the numbers its message is built from).

Every error has a machine-readable ``code`` (the Contracts' ``error.code``),
a human ``message`` and the ``param`` at fault (a field name, or None).
"""

from __future__ import annotations

from typing import Any, Self

from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class DomainError(Exception):
    """Base of every refusal a service makes. Not raised itself."""

    default_code = "error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param

    def relocated(self, message: str, param: str | None) -> Self:
        """The same refusal pointed elsewhere (a workflow node's ``model`` → ``nodes.2.model``)."""
        # Not copy.copy: it re-creates the error from its args, and kinds with
        # required keywords (RateLimited's retry_after_seconds) would not rebuild.
        moved = type(self).__new__(type(self))
        moved.__dict__.update(self.__dict__)
        moved.args = (message,)
        moved.message, moved.param = message, param
        return moved


class InvalidInput(DomainError):
    """The request is malformed or names something that cannot be used (400)."""

    default_code = "invalid"


class UnknownModel(InvalidInput):
    """The model (or ``name@version``) does not exist or is not open to the tenant.

    /api/v1 answers 400 (param ``model``); OpenAI's /v1 answers 404 model_not_found.
    """

    default_code = "model_not_found"

    def __init__(self, message: str, *, param: str | None = "model") -> None:
        super().__init__(message, param=param)


class NotFound(DomainError):
    """No such object for this caller; another tenant's object is answered alike (404)."""

    default_code = "not_found"


class Conflict(DomainError):
    """The request contradicts the object's state or an earlier request (409)."""

    default_code = "conflict"


class PermissionRefused(DomainError):
    """The caller is known but may not do this (403): a role, scope or plan cap."""

    default_code = "permission_denied"


class OverBudget(DomainError):
    """The token budget cannot cover the request's worst-case cost (402)."""

    default_code = "budget_exceeded"

    def __init__(self, message: str, *, rate_limits: Any = None) -> None:
        super().__init__(message)
        # apps.tenants.ratelimit.RateLimits: the buckets to report in X-RateLimit-*.
        self.rate_limits = rate_limits


class RateLimited(DomainError):
    """Over a rate limit or a queue cap (429); retry after ``retry_after_seconds``."""

    default_code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: int,
        code: str | None = None,
        param: str | None = None,
        rate_limits: Any = None,
    ) -> None:
        super().__init__(message, code=code, param=param)
        self.retry_after_seconds = retry_after_seconds
        self.rate_limits = rate_limits


class Unavailable(DomainError):
    """Something the request needs is missing for now (503); retry later."""

    default_code = "unavailable"

    def __init__(
        self, message: str, *, retry_after_seconds: int, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, code=code, param=param)
        self.retry_after_seconds = retry_after_seconds


# What a request needs from outside the process, by the exceptions that say it
# is down or unreachable. Django raises its own OperationalError/InterfaceError
# for any database backend (a refused or timed-out connection, a pool with none
# to give, a server gone mid-query); redis-py its ConnectionError/TimeoutError.
DATABASE = "database"
QUEUE = "queue"


def unavailable_dependency(exc: BaseException) -> str | None:
    """DATABASE or QUEUE (Redis) when ``exc`` says that dependency is down, else None:
    the API answers 503 with Retry-After (llmagentos.api_errors), background
    loops retry, streams tell their clients to reconnect."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return DATABASE
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return QUEUE
    return None
