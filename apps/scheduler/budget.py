"""A tenant's token budget as reservations: the pure model of admission's rule.

Pure Python, standard library only. Admission (``apps.scheduler.admission``)
keeps this state in database rows and updates it with conditional UPDATEs;
this class states the rule those rows must follow, small enough to check with
a property test under any interleaving:

- a task reserves its worst-case cost (prompt estimate + max_tokens) before
  it is queued, and only if ``spent + reserved + worst_case <= budget``;
- when it ends it settles once at its actual cost, releasing the rest;
- so ``spent + reserved <= budget`` always holds and nothing is charged twice.

The worst case is a promise: the worker stops at max_tokens, so actual cost
cannot exceed it. If a caller reports more anyway, only the reserved amount is
charged (charging more would break the invariant that admission relies on);
``settle`` returns the negative difference so the caller can log the overrun.
"""

from __future__ import annotations

from collections.abc import Hashable


class BudgetLedger:
    """Reservations against one budget, keyed by the caller (the task id)."""

    def __init__(self, budget: int, spent: int = 0) -> None:
        if budget < 0 or spent < 0:
            raise ValueError("budget and spent must be non-negative")
        if spent > budget:
            raise ValueError(f"spent ({spent}) already exceeds the budget ({budget})")
        self.budget = budget
        self.spent = spent
        self.reserved = 0
        self._open: dict[Hashable, int] = {}
        # Keys ever settled, so a second settle is recognised and ignored
        # (completions are delivered at least once). In the database this is
        # the reservation row's "settled" flag.
        self._settled: set[Hashable] = set()

    @property
    def available(self) -> int:
        """What a new reservation may still take."""
        return self.budget - self.spent - self.reserved

    def reserve(self, key: Hashable, worst_case: int) -> bool:
        """Reserve ``worst_case`` for ``key``; False (nothing reserved) if the budget cannot cover it.

        A key is used once: reserving one that is open or already settled is a
        caller error (it would let one task hold two reservations).
        """
        if worst_case < 0:
            raise ValueError(f"worst_case must be non-negative, got {worst_case}")
        if key in self._open or key in self._settled:
            raise ValueError(f"reservation {key!r} already exists")
        if self.spent + self.reserved + worst_case > self.budget:
            return False
        self._open[key] = worst_case
        self.reserved += worst_case
        return True

    def settle(self, key: Hashable, actual: int) -> int | None:
        """Close ``key``'s reservation at ``actual``; returns reserved − actual.

        Returns None and changes nothing if ``key`` was already settled or was
        never reserved, so a repeated completion cannot charge twice.
        """
        if actual < 0:
            raise ValueError(f"actual must be non-negative, got {actual}")
        worst_case = self._open.pop(key, None)
        if worst_case is None:
            return None
        self._settled.add(key)
        self.reserved -= worst_case
        self.spent += min(actual, worst_case)
        return worst_case - actual
