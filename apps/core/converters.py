"""Path converters for the identifiers in API URLs (/api/v1 and /v1).

An id segment that cannot name anything matches no route, so Django answers
404 (``handler404``: the Contracts' error shape) before a view or a query
runs: a malformed id is answered like an unknown one, and no database is
handed a string it refuses (PostgreSQL raises on a NUL character, which
would be a 500).

Registered on import: a ``urls.py`` that writes ``<id:…>`` or ``<name:…>``
imports this module first.
"""

from __future__ import annotations

import uuid

from django.urls import register_converter

# Task, workflow, key and worker ids are UUIDs (the Contracts), written in
# their canonical 8-4-4-4-12 form, in either letter case.
UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# A name (a model's): any text but control characters, in one path segment.
NAME_PATTERN = r"[^/\x00-\x1f\x7f]+"
# The same, where a name may hold "/" (OpenAI model ids such as "org/model").
NAME_PATH_PATTERN = r"[^\x00-\x1f\x7f]+"


class IdConverter:
    """``<id:task_id>``: a UUID, given to the view as ``uuid.UUID``."""

    regex = UUID_PATTERN

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value: uuid.UUID | str) -> str:
        return str(value)


class NameConverter:
    """``<name:name>``: a name in one path segment, without control characters."""

    regex = NAME_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class NamePathConverter(NameConverter):
    """``<name_path:model_id>``: a name that may hold "/"."""

    regex = NAME_PATH_PATTERN


# The names the URL patterns use (the OpenAPI schema's types for them: SPECTACULAR_SETTINGS
# PATH_CONVERTER_OVERRIDES, in settings).
CONVERTERS: dict[str, type] = {"id": IdConverter, "name": NameConverter, "name_path": NamePathConverter}

for _name, _converter in CONVERTERS.items():
    register_converter(_converter, _name)
