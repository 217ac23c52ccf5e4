"""The shape every middleware of the project has: sync- and async-capable.

One sync-only middleware makes Django run the whole chain in a thread and call
the async views back through async_to_sync (two thread hops per request, and a
client's disconnect then cancels the wrapper, not the view). A subclass says
what it does around the rest of the chain twice, ``_call`` for a sync chain
and ``_acall`` for an async one; this class picks the one that applies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

GetResponse = Callable[[HttpRequest], Any]


class HybridMiddleware(ABC):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        return self._call(request)

    @abstractmethod
    def _call(self, request: HttpRequest) -> HttpResponseBase: ...

    @abstractmethod
    async def _acall(self, request: HttpRequest) -> HttpResponseBase: ...
