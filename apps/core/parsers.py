"""JSON request bodies, read with a cap on how deeply they nest.

Every JSON body (DRF's /api/v1 through ``JSONParser``, set in settings, and
the OpenAI-compatible /v1 through ``parse_json``) is read here. A document
nested deeper than ``settings.MAX_JSON_DEPTH`` is refused as invalid input
naming the top-level field that holds it: Python's JSON decoder recurses once
per level and raises RecursionError near 1,000 levels (a 500), and the code
that handles a body (validation, copies, encryption) recurses too, so a
merely deep document would fail later in the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant

from apps.core.errors import InvalidInput

# A JSON string (group 1; with the colon after it, group 2, when it is a key)
# or a bracket: enough to follow the nesting of a document the decoder could
# not read, without decoding it.
_TOKEN = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")(\s*:)?|[\[\]{}]')


def parse_json(data: str | bytes, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """The document in ``data`` (``json.loads``: a ValueError when it is not JSON).

    Raises InvalidInput (code ``nested_too_deeply``, param the top-level field,
    or None when the body itself is an array) when it nests deeper than
    ``settings.MAX_JSON_DEPTH``."""
    limit = settings.MAX_JSON_DEPTH
    try:
        document = json.loads(data, parse_constant=parse_constant)
    except RecursionError:
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data), "replace")
        raise _too_deep(_field_too_deep_in_text(text, limit), limit) from None
    too_deep, field = _field_too_deep(document, limit)
    if too_deep:
        raise _too_deep(field, limit)
    return document


def _too_deep(field: str | None, limit: int) -> InvalidInput:
    where = field if field is not None else "the body"
    return InvalidInput(f"{where}: nested more than {limit} levels deep", code="nested_too_deeply", param=field)


def _field_too_deep(document: Any, limit: int) -> tuple[bool, str | None]:
    """Whether ``document`` nests deeper than ``limit`` (the body's own object or array
    is level 1), and the top-level field where it does. Iterative: no recursion."""
    stack: list[tuple[Any, int, str | None]] = [(document, 1, None)]
    while stack:
        value, depth, field = stack.pop()
        if isinstance(value, dict):
            if depth > limit:
                return True, field
            stack.extend((child, depth + 1, str(key) if depth == 1 else field) for key, child in value.items())
        elif isinstance(value, list):
            if depth > limit:
                return True, field
            stack.extend((child, depth + 1, field) for child in value)
    return False, None


def _field_too_deep_in_text(text: str, limit: int) -> str | None:
    """The top-level field of ``text`` where the nesting first goes past ``limit``."""
    depth = 0
    field: str | None = None
    for token in _TOKEN.finditer(text):
        key, colon = token.group(1), token.group(2)
        if key is not None:
            if colon and depth == 1:
                field = json.loads(key)
        elif token.group(0) in "[{":
            depth += 1
            if depth > limit:
                return field
        else:
            depth -= 1
    return field


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the depth cap (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            return parse_json(text, parse_constant=strict_constant if self.strict else None)
        except ValueError as exc:  # not JSON (a UnicodeDecodeError is one too)
            raise ParseError(f"JSON parse error - {exc}") from None
