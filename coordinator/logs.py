"""The coordinator's log lines: text or JSON (``--log-format``), each naming the workflow,
step, worker and epoch it is about (null when it is about none).

A worker's stream handler binds its worker ID for everything done on its behalf
(``bound``); a line about one execution passes the rest as ``extra=about(...)``. The
fields are filled in by a filter on the handler, so any logger's lines carry them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

FIELDS = ("workflow_id", "step_id", "worker_id", "epoch")
FORMATS = ("text", "json")
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("stepline_log", default=None)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Lines logged in this context (and in tasks it starts) carry ``fields``."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def about(
    workflow_id: str | None = None,
    epoch: int | None = None,
    step_id: str | None = None,
    worker_id: str | None = None,
) -> dict[str, Any]:
    """``extra=`` for a line about one execution (or step, or worker)."""
    given = {"workflow_id": workflow_id, "epoch": epoch, "step_id": step_id, "worker_id": worker_id}
    return {k: v for k, v in given.items() if v is not None}


class ContextFilter(logging.Filter):
    """Gives every record the four fields: its own ``extra``, else the bound ones, else None."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get() or {}
        for name in FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, context.get(name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the four fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update({name: getattr(record, name, None) for name in FIELDS})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the fields that are set appended in brackets."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        set_fields = [
            f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None) is not None
        ]
        return f"{line} [{' '.join(set_fields)}]" if set_fields else line


def configure(level: str, fmt: str) -> None:
    """The root logger's one handler, to stderr, in ``fmt`` ("text" or "json")."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python's warnings (a library's) become lines of the same format, not raw stderr.
    logging.captureWarnings(True)
