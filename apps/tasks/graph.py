"""Dependency graphs and output references, in pure Python (no Django).

A graph is given as ``depends_on``: each node name mapped to the names of its
parents. ``apps.tasks.workflows`` does the database side; this module only
answers questions about the shape, so it is tested without a database.

Output references: a task's prompt (or a message's content) may contain
``{{KEY.output}}``, where KEY names one of its parents. The reference is
replaced by the parent's output *literally*, in one pass, with a regular
expression — never through a template engine, which would let a tenant's text
(or a model's output) execute. Text that came from an output is never scanned
again, so an output that itself contains ``{{x.output}}`` arrives verbatim.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

NODE_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# KEY is a node name or a task id (a UUID fits the same characters).
REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_-]{1,64})\.output\s*\}\}")


def find_cycle(depends_on: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as ``[a, b, …, a]`` (each depends on the next), or None.

    Iterative depth-first search, so a long chain cannot exhaust Python's
    stack. Names a parent that is not a node are ignored (checked elsewhere).
    """
    done: set[str] = set()
    for start in depends_on:
        if start in done:
            continue
        path: list[str] = []  # the nodes being visited, in order
        on_path: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(depends_on[start]))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, parents = stack[-1]
            parent = next(parents, None)
            if parent is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif parent in on_path:
                return path[path.index(parent):] + [parent]
            elif parent not in done and parent in depends_on:
                stack.append((parent, iter(depends_on[parent])))
                path.append(parent)
                on_path.add(parent)
    return None


def _children(depends_on: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {name: [] for name in depends_on}
    for name, parents in depends_on.items():
        for parent in dict.fromkeys(parents):
            children[parent].append(name)
    return children


def critical_path_ranks(depends_on: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each node's longest chain of descendants, in nodes (0: nothing depends on it).

    A node with a high rank holds up the most work after it, so the scheduler
    starts it first: that is what shortens the whole graph's run.
    """
    children = _children(depends_on)
    ranks: dict[str, int] = {}
    for name in reversed(topological_order(depends_on)):
        ranks[name] = max((ranks[child] + 1 for child in children[name]), default=0)
    return ranks


def topological_order(depends_on: Mapping[str, Sequence[str]]) -> list[str]:
    """Parents before children, otherwise in the order given. Raises ValueError on a cycle."""
    position = {name: i for i, name in enumerate(depends_on)}
    children = _children(depends_on)
    missing = {name: len(set(parents)) for name, parents in depends_on.items()}
    ready = [position[name] for name, count in missing.items() if count == 0]
    heapq.heapify(ready)
    names = list(depends_on)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in children[name]:
            missing[child] -= 1
            if missing[child] == 0:
                heapq.heappush(ready, position[child])
    if len(order) != len(depends_on):
        raise ValueError("the graph has a cycle")
    return order


def text_references(text: str) -> list[str]:
    """The KEYs of the ``{{KEY.output}}`` references in ``text``, in order."""
    return REFERENCE.findall(text)


def input_references(prompt: str | None, messages: Iterable[Mapping[str, Any]] | None) -> Iterator[tuple[str, str]]:
    """``(field, KEY)`` for every reference in a task's input; field as an error's param names it."""
    if prompt is not None:
        for key in text_references(prompt):
            yield "prompt", key
    for index, message in enumerate(messages or ()):
        for key in text_references(message.get("content") or ""):
            yield f"messages.{index}.content", key


def substitute(text: str, outputs: Mapping[str, str]) -> str:
    """Replace each reference whose KEY is in ``outputs`` by that output, literally.

    One pass of ``re.sub`` with a function: what the function returns is
    inserted as it is (no backslash escapes, no re-scan), so substituted text
    is never expanded again. References to other KEYs are left as written.
    """

    def replace(match: re.Match[str]) -> str:
        return outputs.get(match.group(1), match.group(0))

    return REFERENCE.sub(replace, text)


def substitute_input(payload: Mapping[str, Any], outputs: Mapping[str, str]) -> dict[str, Any]:
    """A task input (prompt or messages, stop) with its references replaced."""
    resolved = dict(payload)
    if payload.get("prompt") is not None:
        resolved["prompt"] = substitute(payload["prompt"], outputs)
    if payload.get("messages"):
        resolved["messages"] = [
            {**message, "content": substitute(message.get("content") or "", outputs)} for message in payload["messages"]
        ]
    return resolved
