"""OpenTelemetry spans of the SDK, when ``opentelemetry-api`` is installed (optional: the
SDK needs only grpcio and protobuf) and the process has a tracer provider.

A client's start is a span whose W3C ``traceparent`` goes with the start; the coordinator
records the workflow under its own span in that trace, and every assignment carries that
context back: each execution of the workflow (recoveries included) is a span of the same
trace, and each step attempt a span under it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # tracing is optional
    trace = None  # type: ignore[assignment]

_PROPAGATOR = TraceContextTextMapPropagator() if trace is not None else None
_TRACER = "stepline.sdk"


def _inject() -> str:
    assert _PROPAGATOR is not None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def start_span(workflow_name: str) -> Iterator[str]:
    """The client span of one start; yields the traceparent to send with it ("" untraced)."""
    if trace is None:
        yield ""
        return
    tracer = trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(
        f"stepline.start_workflow {workflow_name}", kind=trace.SpanKind.CLIENT
    ) as span:
        yield _inject() if span.get_span_context().is_valid else ""


@contextlib.contextmanager
def workflow_span(name: str, traceparent: str, **attributes: Any) -> Iterator[None]:
    """One execution of a workflow, in the trace its assignment names."""
    if trace is None or _PROPAGATOR is None or not traceparent:
        yield
        return
    parent = _PROPAGATOR.extract({"traceparent": traceparent})
    tracer = trace.get_tracer(_TRACER)
    token = otel_context.attach(parent)
    try:
        with tracer.start_as_current_span(f"stepline.workflow {name}", attributes=attributes):
            yield
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def step_span(name: str, **attributes: Any) -> Iterator[None]:
    """One attempt of a step body, under its execution's span (none if untraced)."""
    if trace is None or not trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with trace.get_tracer(_TRACER).start_as_current_span(f"stepline.step {name}", attributes=attributes):
        yield
