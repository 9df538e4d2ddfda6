"""OpenTelemetry: one trace from a client's start through the coordinator to the workflow's
execution and each of its steps (in-memory exporter; all four in this process)."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc

from tests.spans import trace_here
from worker_sdk import Client, Worker, step, workflow


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = trace_here()
    exporter.clear()
    yield exporter
    exporter.clear()


@step()
async def add(a: int, b: int) -> int:
    return a + b


@workflow(name="traced.sum")
async def total(n: int) -> int:
    result = 0
    for i in range(n):
        result = await add(result, i)
    return result


async def test_one_trace_covers_the_client_the_coordinator_the_workflow_and_its_steps(
    address: str, client: Client, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test")
    async with Worker(address, workflows=[total]):
        with tracer.start_as_current_span("the caller") as caller:
            handle = await client.start_workflow(total, 3)
        assert await handle.result(timeout=10) == 3
    finished = spans.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    by_name = {s.name: s for s in finished}
    names = sorted(s.name for s in finished if s.context.trace_id == trace_id)
    assert names == [
        "stepline.start traced.sum",  # the coordinator's
        "stepline.start_workflow traced.sum",  # the client's
        "stepline.step add",
        "stepline.step add",
        "stepline.step add",
        "stepline.workflow traced.sum",
        "the caller",
    ]
    client_span = by_name["stepline.start_workflow traced.sum"]
    coordinator_span = by_name["stepline.start traced.sum"]
    workflow_span = by_name["stepline.workflow traced.sum"]
    assert parent_of(client_span) == caller.get_span_context().span_id
    assert parent_of(coordinator_span) == client_span.context.span_id
    assert parent_of(workflow_span) == coordinator_span.context.span_id
    attributes = dict(workflow_span.attributes or {})
    assert (attributes["workflow_id"], attributes["epoch"]) == (handle.workflow_id, 1)
    steps = [s for s in finished if s.name == "stepline.step add"]
    assert {parent_of(s) for s in steps} == {workflow_span.context.span_id}
    assert sorted(str(s.attributes["step_id"]) for s in steps if s.attributes) == ["1", "2", "3"]


async def test_an_untraced_start_records_no_trace(
    address: str, client: Client, spans: InMemorySpanExporter
) -> None:
    async with Worker(address, workflows=[total]):
        handle = await client.start_workflow(total, 2)
        assert await handle.result(timeout=10) == 1
    # The client span is a root of its own; the workflow and steps join its trace.
    finished = spans.get_finished_spans()
    roots = [s for s in finished if s.parent is None]
    assert [s.name for s in roots] == ["stepline.start_workflow traced.sum"]
    assert {s.context.trace_id for s in finished} == {roots[0].context.trace_id}


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_malformed_traceparent_is_ignored_and_the_start_goes_on(
    channel: grpc.aio.Channel, conn: asyncpg.Connection
) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    good = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    for workflow_id, given, kept in [("bad", "not-a-traceparent", ""), ("good", good, good[:35])]:
        await stub.StartWorkflow(
            cpb.StartWorkflowRequest(workflow_name="traced.sum", workflow_id=workflow_id, traceparent=given)
        )
        stored = await conn.fetchval("SELECT traceparent FROM workflows WHERE workflow_id = $1", workflow_id)
        # The caller's trace goes on (under a span of the coordinator's if this process traces).
        assert stored[:35] == kept
