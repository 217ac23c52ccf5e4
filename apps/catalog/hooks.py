"""Hooks the catalog and the worker registry fire for the scheduler above them.

``placement_inputs_changed``: what the placement run places (models,
versions) or places onto (workers) has changed. apps.scheduler registers the
placement run on it. Catalog services fire it once their change is committed
(``fire_after_commit``); the worker registry fires it at once, as it always
did, outside any transaction.
"""

from __future__ import annotations

from django.db import transaction

from apps.core.hooks import Hook

placement_inputs_changed: Hook[[]] = Hook("placement inputs changed")


def fire_after_commit() -> None:
    transaction.on_commit(placement_inputs_changed, robust=True)
