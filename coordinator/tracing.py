"""OpenTelemetry spans of the coordinator, when opentelemetry is installed and the
process has a tracer provider (without one, the API's no-op tracer costs next to nothing).

Trace context travels as W3C ``traceparent`` strings: in StartWorkflowRequest (the
caller's), stored with the workflow (this coordinator's start span), and in every
Assignment (for the SDK's workflow and step spans).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

try:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # tracing is optional
    trace = None  # type: ignore[assignment]

_PROPAGATOR = TraceContextTextMapPropagator() if trace is not None else None


@contextlib.contextmanager
def start_span(name: str, parent: str, **attributes: str | int) -> Iterator[str]:
    """A span named ``name``, child of the ``parent`` traceparent, for the length of the
    block; yields its own traceparent (``parent`` again when nothing traces)."""
    if trace is None or _PROPAGATOR is None:
        yield parent
        return
    tracer = trace.get_tracer("stepline.coordinator")
    span = tracer.start_span(
        name, context=_PROPAGATOR.extract({"traceparent": parent}), attributes=attributes
    )
    try:
        if not span.get_span_context().is_valid:
            yield parent
            return
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        yield carrier.get("traceparent", parent)
    finally:
        span.end()
