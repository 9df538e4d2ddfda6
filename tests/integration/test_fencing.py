"""Writes carrying a stale epoch are refused in the statement that would write them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest

from protos.stepline.v1 import client_pb2 as cpb
from protos.stepline.v1 import client_pb2_grpc as cpb_grpc
from protos.stepline.v1 import common_pb2 as pb
from protos.stepline.v1 import worker_pb2 as wpb
from protos.stepline.v1 import worker_pb2_grpc as wpb_grpc


@pytest.fixture
async def channel(address: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(address) as ch:
        yield ch


class RawWorker:
    """A worker speaking the protocol by hand, to send exactly what a test needs."""

    def __init__(self, channel: grpc.aio.Channel, worker_id: str) -> None:
        self.call: Any = wpb_grpc.WorkerServiceStub(channel).Connect()
        self.worker_id = worker_id
        self.pending: list[wpb.CoordinatorEvent] = []

    async def register(self, held: list[tuple[str, int]] = ()) -> wpb.Registered:  # type: ignore[assignment]
        refs = [wpb.ExecutionRef(workflow_id=w, epoch=e) for w, e in held]
        register = wpb.Register(
            worker_id=self.worker_id, workflow_names=["wf"], protocol_version=1, held=refs
        )
        await self.call.write(wpb.WorkerFrame(events=[wpb.WorkerEvent(register=register)]))
        return (await self.next("registered")).registered

    async def next(self, kind: str) -> wpb.CoordinatorEvent:
        """The next event of ``kind``, skipping others."""
        while True:
            while self.pending:
                event = self.pending.pop(0)
                if event.WhichOneof("kind") == kind:
                    return event
            frame = await self.call.read()
            assert isinstance(frame, wpb.CoordinatorFrame), frame
            self.pending.extend(frame.events)

    async def send(self, **event: Any) -> None:
        await self.call.write(wpb.WorkerFrame(events=[wpb.WorkerEvent(**event)]))

    async def result(self, workflow_id: str, epoch: int, step_id: str, value: bytes) -> None:
        await self.send(
            step_result=wpb.StepResult(
                workflow_id=workflow_id, epoch=epoch, step_id=step_id, step_name="s", attempt=1,
                output=pb.Payload(data=value, encoding="json"),
            )
        )  # fmt: skip


async def steps_table(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await conn.fetch("SELECT * FROM steps ORDER BY step_id")]


async def test_a_reassigned_workflow_refuses_the_old_epoch(
    channel: grpc.aio.Channel, conn: asyncpg.Connection
) -> None:
    old = RawWorker(channel, "old")
    await old.register()
    await cpb_grpc.WorkflowServiceStub(channel).StartWorkflow(
        cpb.StartWorkflowRequest(workflow_name="wf", workflow_id="fenced")
    )
    first = (await old.next("assignment")).assignment
    assert first.epoch == 1
    await old.result("fenced", 1, "1", b'"one"')
    assert (await old.next("step_ack")).step_ack.step_id == "1"
    old.call.cancel()  # the old worker's stream drops: its execution is released at once

    new = RawWorker(channel, "new")
    await new.register()
    second = (await new.next("assignment")).assignment
    assert second.epoch == 2
    assert [(s.step_id, s.output.data) for s in second.steps] == [("1", b'"one"')]
    before = await steps_table(conn)

    # The old worker comes back; what it still believes it owns is refused.
    zombie = RawWorker(channel, "old")
    registered = await zombie.register(held=[("fenced", 1)])
    assert list(registered.reattached) == []
    abandon = (await zombie.next("abandon")).abandon
    assert (abandon.workflow_id, abandon.epoch, abandon.reason) == (
        "fenced",
        1,
        wpb.ABANDON_REASON_STALE_EPOCH,
    )
    await zombie.result("fenced", 1, "2", b'"late"')
    await zombie.send(
        workflow_result=wpb.WorkflowResult(workflow_id="fenced", epoch=1, output=pb.Payload(data=b'"stale"'))
    )
    refusals = [(await zombie.next("abandon")).abandon for _ in range(2)]
    assert all(r.reason == wpb.ABANDON_REASON_STALE_EPOCH for r in refusals)
    assert "epoch 1 is stale; the workflow is at epoch 2" in refusals[0].message
    assert await steps_table(conn) == before
    assert await conn.fetchval("SELECT status FROM workflows WHERE workflow_id = 'fenced'") == "RUNNING"

    # The current owner's writes go through.
    await new.result("fenced", 2, "2", b'"two"')
    assert (await new.next("step_ack")).step_ack.step_id == "2"
    for w in (new, zombie):
        w.call.cancel()


async def test_a_result_resent_after_a_lost_ack_is_acknowledged_once(
    channel: grpc.aio.Channel, conn: asyncpg.Connection
) -> None:
    worker = RawWorker(channel, "resender")
    await worker.register()
    await cpb_grpc.WorkflowServiceStub(channel).StartWorkflow(
        cpb.StartWorkflowRequest(workflow_name="wf", workflow_id="resent")
    )
    await worker.next("assignment")
    await worker.result("resent", 1, "1", b'"first"')
    await worker.next("step_ack")
    await worker.result("resent", 1, "1", b'"second"')  # as after a reconnect
    assert (await worker.next("step_ack")).step_ack.step_id == "1"
    assert await conn.fetchval("SELECT output FROM steps WHERE step_id = '1'") == b'"first"'
    worker.call.cancel()
