"""What every log line carries, and the two forms the lines are written in.

Every line says when, how grave, which logger, which process (its role and
pid), and, where there is one, the request it serves and the task it is
about: a request's id (X-Request-ID, set by llmagentos.access_log and
llmagentos.middleware.RequestIdMiddleware) is bound for the whole request, a
task's id and the id of the request that submitted it (Task.request_id) for
the scheduler's and the worker's work on that task. They are bound with
``bound(...)`` and carried by contextvars, so they follow the work into
``sync_to_async`` threads and asyncio tasks, and ``ContextFilter`` (on the
handler: every logger's lines pass it) writes them onto each record.

Two formats (settings.LOG_FORMAT): ``TextFormatter`` for people and
``JsonFormatter``, one JSON object per line, for log shippers. Extra
structured fields (the access log's) travel as ``extra={"fields": {...}}``:
JSON lines get them as keys, text lines have them in the message already.

Standard library only: the supervisor (apps.runtime.supervisor), which runs
without Django, configures its logging from settings.LOGGING too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The context fields a line carries, in the order text lines show them.
FIELDS = ("request_id", "task_id")

_bound: ContextVar[Mapping[str, str] | None] = ContextVar("log_fields", default=None)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Lines logged inside carry these fields (empty values leave a field as it was)."""
    merged = {**(_bound.get() or {}), **{name: value for name, value in fields.items() if value}}
    token = _bound.set(merged)
    try:
        yield
    finally:
        _bound.reset(token)


def current(field: str) -> str:
    """The bound value of ``field`` ("" when none)."""
    return (_bound.get() or {}).get(field, "")


@dataclass
class Caller:
    """Who a request or a WebSocket session turned out to be, for its access line:
    learnt deep inside (where the API key is checked), read at its end."""

    tenant: str = ""


_caller: ContextVar[Caller | None] = ContextVar("log_caller", default=None)


@contextmanager
def tracking_caller() -> Iterator[Caller]:
    """A Caller that ``note_tenant`` fills for the work done inside (threads included:
    they run in a copy of this context, which holds the same Caller)."""
    caller = Caller()
    token = _caller.set(caller)
    try:
        yield caller
    finally:
        _caller.reset(token)


def note_tenant(slug: str) -> None:
    """The current request (or session) acts for this tenant; outside one, nothing."""
    caller = _caller.get()
    if caller is not None:
        caller.tenant = slug


def _program() -> str:
    """This process's role when nobody named it: the management command, or the program."""
    argv = sys.argv
    if not argv or not argv[0]:
        return "python"
    program = os.path.basename(argv[0])
    if program == "manage.py" and len(argv) > 1:
        return argv[1]
    if program == "__main__.py":  # python -m PACKAGE
        return os.path.basename(os.path.dirname(argv[0]))
    return program


_process_name = [_program()]


def set_process_name(name: str) -> None:
    """Name this process's role in its lines ("server", "scheduler", "worker", "supervisor")."""
    _process_name[0] = name


def process_name() -> str:
    return _process_name[0]


class ContextFilter(logging.Filter):
    """Writes the bound fields and the process's role onto every record (it lets all through).

    On the handler, not on a logger: a handler's filters see every record it
    writes, whichever logger made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _bound.get() or {}
        for name in FIELDS:
            if not hasattr(record, name):  # an explicit extra={...} wins
                setattr(record, name, fields.get(name, ""))
        record.process_name = _process_name[0]
        return True


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO apps.runtime.execution worker[4242] request_id=… task_id=… message``

    A traceback follows on the next lines, as usual."""

    def format(self, record: logging.LogRecord) -> str:
        context = "".join(f" {name}={value}" for name in FIELDS if (value := getattr(record, name, "")))
        process = getattr(record, "process_name", "") or _process_name[0]
        head = f"{_time(record)} {record.levelname} {record.name} {process}[{record.process}]"
        line = f"{head}{context} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, pid, the context fields,
    message, the record's structured ``fields``, and ``exception`` (a traceback, as text)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "process": getattr(record, "process_name", "") or _process_name[0],
            "pid": record.process,
        }
        for name in FIELDS:
            if value := getattr(record, name, ""):
                line[name] = value
        line["message"] = record.getMessage()
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            for name, value in extra.items():
                line.setdefault(name, value)  # never hides a standard key
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: a field of another type (a UUID, a datetime) is written, not refused.
        return json.dumps(line, ensure_ascii=False, default=str)
