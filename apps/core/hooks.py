"""Explicit hooks: how a lower app causes an effect in the apps above it.

Layers import downward only (docs/layout.md), yet ending a task must settle
its charge (scheduler), end its stream (streaming) and wake the dispatcher.
The lower app declares a ``Hook`` and calls it; each app that cares registers
its function in its ``AppConfig.ready()``. A ``Port`` is the same for a
question with one answer (task admission asks the scheduler).

Registration is by name, so a re-registration (tests reloading an app)
replaces rather than doubles an effect; the order of first registration is
the order of calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class Hook(Generic[P]):
    """Zero or more effects, called in registration order."""

    def __init__(self, name: str) -> None:
        self.name = name
        # object, not None: what an effect returns is ignored, so a function
        # that also answers something (settle_task's bool) can be one.
        self._effects: dict[str, Callable[P, object]] = {}

    def register(self, key: str, effect: Callable[P, object]) -> None:
        self._effects[key] = effect

    def unregister(self, key: str) -> None:
        self._effects.pop(key, None)

    def effects(self) -> list[Callable[P, object]]:
        return list(self._effects.values())

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for effect in self.effects():
            effect(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Hook({self.name!r}, {list(self._effects)})"


class Port(Generic[P, R]):
    """One implementation, registered by the app above that provides it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._implementation: Callable[P, R] | None = None

    def register(self, implementation: Callable[P, R]) -> None:
        self._implementation = implementation

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._implementation is None:
            raise RuntimeError(f"nothing provides {self.name!r}: is the app that registers it installed?")
        return self._implementation(*args, **kwargs)
