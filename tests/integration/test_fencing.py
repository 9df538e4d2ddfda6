"""Writes carrying a stale epoch are refused in the statement that would write them."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc
from stepline.v1 import worker_pb2 as wpb

from tests.protocol import RawWorker, step_result, workflow_output


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
    first = (await old.next_of("assignment")).assignment
    assert first.epoch == 1
    await old.send(step_result("fenced", "1", b'"one"', epoch=1))
    assert (await old.next_of("step_ack")).step_ack.step_id == "1"
    old.close()  # the old worker's stream drops: its execution is released at once

    new = RawWorker(channel, "new")
    await new.register()
    second = (await new.next_of("assignment")).assignment
    assert second.epoch == 2
    assert [(s.step_id, s.output.data) for s in second.steps] == [("1", b'"one"')]
    before = await steps_table(conn)

    # The old worker comes back; what it still believes it owns is refused.
    zombie = RawWorker(channel, "old")
    registered = await zombie.register(held=[("fenced", 1)])
    assert list(registered.reattached) == []
    abandon = (await zombie.next_of("abandon")).abandon
    assert (abandon.workflow_id, abandon.epoch, abandon.reason) == (
        "fenced",
        1,
        wpb.ABANDON_REASON_STALE_EPOCH,
    )
    await zombie.send(step_result("fenced", "2", b'"late"', epoch=1))
    await zombie.send(workflow_output("fenced", b'"stale"', epoch=1))
    refusals = [(await zombie.next_of("abandon")).abandon for _ in range(2)]
    assert all(r.reason == wpb.ABANDON_REASON_STALE_EPOCH for r in refusals)
    assert "epoch 1 is stale; the workflow is at epoch 2" in refusals[0].message
    assert await steps_table(conn) == before
    assert await conn.fetchval("SELECT status FROM workflows WHERE workflow_id = 'fenced'") == "RUNNING"

    # The current owner's writes go through.
    await new.send(step_result("fenced", "2", b'"two"', epoch=2))
    assert (await new.next_of("step_ack")).step_ack.step_id == "2"
    for w in (new, zombie):
        w.close()


async def test_a_result_resent_after_a_lost_ack_is_acknowledged_once(
    channel: grpc.aio.Channel, conn: asyncpg.Connection
) -> None:
    worker = RawWorker(channel, "resender")
    await worker.register()
    await cpb_grpc.WorkflowServiceStub(channel).StartWorkflow(
        cpb.StartWorkflowRequest(workflow_name="wf", workflow_id="resent")
    )
    await worker.next_of("assignment")
    await worker.send(step_result("resent", "1", b'"first"', epoch=1))
    await worker.next_of("step_ack")
    await worker.send(step_result("resent", "1", b'"second"', epoch=1))  # as after a reconnect
    assert (await worker.next_of("step_ack")).step_ack.step_id == "1"
    assert await conn.fetchval("SELECT output FROM steps WHERE step_id = '1'") == b'"first"'
    worker.close()
