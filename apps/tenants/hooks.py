"""Hooks the tenants app fires for the apps above it (apps.core.hooks).

``tenant_resumed``: a paused tenant may run tasks again. Its queued tasks
were passed over while it was paused (the dispatcher treats a paused tenant
as one at a running cap of 0); apps.scheduler registers a wake-up of the
dispatcher on it, so they start now rather than at the next tick. Fired once
the change is committed (``fire_resumed_after_commit``): a dispatcher woken
earlier would still read the tenant as paused.
"""

from __future__ import annotations

from django.db import transaction

from apps.core.hooks import Hook

tenant_resumed: Hook[[]] = Hook("tenant resumed")


def fire_resumed_after_commit() -> None:
    transaction.on_commit(tenant_resumed, robust=True)
