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

# The longest prompt, or content of one message, a task may have: what a
# submission may send (the API validates it), and what a task's input may grow
# to when its parents' outputs are substituted (``substitute_input``).
MAX_PROMPT_CHARS = 200_000

# Critical-path ranks saturate here: a task with a chain of this many tasks
# waiting behind it ranks as high as one with a longer chain. It keeps each
# dependent submission's rank update bounded (apps.tasks.dependencies): an
# ancestor more than this many links up already ranks at the cap, so the walk
# up stops there and the capped ranks stay exact. A workflow has at most 100
# nodes, so its ranks (at most 99) are never capped.
RANK_HORIZON = 100


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


class InputTooLong(ValueError):
    """A field of a task's input would pass its limit once its references are replaced."""

    def __init__(self, field: str, length: int, limit: int) -> None:
        super().__init__(
            f"{field} would be {length} characters once its references are replaced (the limit is {limit})"
        )
        self.field, self.length, self.limit = field, length, limit


def substituted_length(text: str, outputs: Mapping[str, str]) -> int:
    """How long ``substitute(text, outputs)`` would be, without building it.

    A prompt of 200,000 characters holds over 16,000 references; each
    replaced by a long output, the text would take gigabytes, so its length
    is known before the text is built."""
    length = len(text)
    for match in REFERENCE.finditer(text):
        output = outputs.get(match.group(1))
        if output is not None:
            length += len(output) - (match.end() - match.start())
    return length


def substitute_input(
    payload: Mapping[str, Any], outputs: Mapping[str, str], limit: int = MAX_PROMPT_CHARS
) -> dict[str, Any]:
    """A task input (prompt or messages, stop) with its references replaced.

    Each field is held to ``limit`` characters after the replacement, as a
    submitted prompt is before it: InputTooLong names the first field over it.
    """
    texts = [("prompt", payload.get("prompt"))]
    texts += [(f"messages.{i}.content", m.get("content") or "") for i, m in enumerate(payload.get("messages") or ())]
    for field, text in texts:
        if text is not None and (length := substituted_length(text, outputs)) > limit:
            raise InputTooLong(field, length, limit)
    resolved = dict(payload)
    if payload.get("prompt") is not None:
        resolved["prompt"] = substitute(payload["prompt"], outputs)
    if payload.get("messages"):
        resolved["messages"] = [
            {**message, "content": substitute(message.get("content") or "", outputs)} for message in payload["messages"]
        ]
    return resolved
