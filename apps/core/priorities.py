"""The Contracts' priority classes — the one definition.

Pure Python (the scheduling policy imports it); the Django choices
(apps.tenants.models.PriorityClass) are built from these values.
"""

INTERACTIVE = "interactive"
NORMAL = "normal"
BATCH = "batch"

CLASSES: tuple[str, ...] = (INTERACTIVE, NORMAL, BATCH)
"""Highest first; a class's index is its level (0 = top)."""

DEFAULT = NORMAL


def rank(priority_class: str) -> int:
    """0 for the highest class; ValueError for an unknown one."""
    return CLASSES.index(priority_class)
