"""A tenant's token budget as reservations: the pure model of admission's rule.

Pure Python, standard library only. Admission (``apps.scheduler.admission``)
keeps this state in database rows and updates it with conditional UPDATEs;
this class states the rule those rows must follow, small enough to check with
a property test under any interleaving:

- a task reserves its worst-case cost (prompt tokens + max_tokens) before
  it is queued, and only if ``spent + reserved + worst_case <= budget``;
- when it ends it settles once at its actual cost, in full, releasing its
  reservation; nothing is charged twice.

The worker stops at max_tokens, so only the prompt part can be larger than
reserved: where the model's adapter cannot count a prompt, admission reserves
by an estimate. The actual cost is charged even then — the tenant used those
tokens — so ``spent + reserved <= budget + overrun`` holds, where ``overrun``
is the sum of what settled tasks used beyond their reservations; a budget that
is passed admits nothing more. ``settle`` returns reserved − actual (negative
for an overrun) so the caller can log it.
"""

from __future__ import annotations

from collections.abc import Hashable


class BudgetLedger:
    """Reservations against one budget, keyed by the caller (the task id)."""

    def __init__(self, budget: int, spent: int = 0) -> None:
        if budget < 0 or spent < 0:
            raise ValueError("budget and spent must be non-negative")
        self.budget = budget
        self.spent = spent  # may pass the budget: actual costs are charged in full
        self.reserved = 0
        self.overrun = 0  # what settled tasks used beyond their reservations
        self._open: dict[Hashable, int] = {}
        # Keys ever settled, so a second settle is recognised and ignored
        # (completions are delivered at least once). In the database this is
        # the reservation row's "settled" flag.
        self._settled: set[Hashable] = set()

    @property
    def available(self) -> int:
        """What a new reservation may still take (none once an overrun passed the budget)."""
        return max(self.budget - self.spent - self.reserved, 0)

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
        """Close ``key``'s reservation, charging ``actual`` in full; returns reserved − actual.

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
        self.spent += actual
        self.overrun += max(actual - worst_case, 0)
        return worst_case - actual
