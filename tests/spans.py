"""Spans for the tracing tests: a process-wide in-memory exporter for this process, and a
file exporter that worker processes use (``STEPLINE_TEST_SPANS``: one JSON line per span)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

IN_MEMORY = InMemorySpanExporter()


def trace_here() -> InMemorySpanExporter:
    """This process's spans go to IN_MEMORY (the global provider is set once per process)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(IN_MEMORY))
        trace.set_tracer_provider(provider)
    return IN_MEMORY


class FileExporter(SpanExporter):
    """Appends each finished span as one JSON line (one write: whole lines across processes)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            doc = {
                "name": span.name,
                "trace_id": span.context.trace_id,
                "span_id": span.context.span_id,
                "parent": span.parent.span_id if span.parent is not None else None,
                "attributes": dict(span.attributes or {}),
                "pid": os.getpid(),
            }
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (json.dumps(doc) + "\n").encode())
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS


def trace_to_file_if_asked() -> None:
    """In a test's worker process: export to the file STEPLINE_TEST_SPANS names, if any."""
    path = os.environ.get("STEPLINE_TEST_SPANS")
    if path:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(FileExporter(path)))
        trace.set_tracer_provider(provider)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
