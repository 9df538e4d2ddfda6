"""Every durable operation, driven through the generated stubs alone (no SDK on the worker side).

This is what a worker in another language does: Wait, Send, SetEvent, Idle and Suspend
on the stream, StepDone back, and Send and GetEvent on the client service.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc
from stepline.v1 import common_pb2 as pb
from stepline.v1 import worker_pb2 as wpb

from tests.e2e.processes import eventually
from tests.protocol import RawWorker


def event(**kind: Any) -> wpb.WorkerEvent:
    return wpb.WorkerEvent(**kind)


def wait(workflow_id: str, step_id: str, epoch: int = 1, **condition: Any) -> wpb.WorkerEvent:
    return event(wait=wpb.Wait(workflow_id=workflow_id, epoch=epoch, step_id=step_id, **condition))


def seconds(s: float) -> Duration:
    d = Duration()
    d.FromMilliseconds(int(s * 1000))
    return d


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> cpb_grpc.WorkflowServiceAsyncStub:
    return cpb_grpc.WorkflowServiceStub(channel)


async def started(
    stub: cpb_grpc.WorkflowServiceAsyncStub, worker: RawWorker, workflow_id: str
) -> wpb.Assignment:
    await stub.StartWorkflow(cpb.StartWorkflowRequest(workflow_name="wf", workflow_id=workflow_id))
    return (await worker.next_of("assignment")).assignment


async def test_sleep_is_answered_when_its_time_has_come(
    channel: grpc.aio.Channel, stub: cpb_grpc.WorkflowServiceAsyncStub
) -> None:
    worker = RawWorker(channel)
    await worker.register()
    await started(stub, worker, "sleeper")
    sent = time.monotonic()
    await worker.send(wait("sleeper", "1", sleep=wpb.SleepCondition(duration=seconds(0.2))))
    done = (await worker.next_of("step_done")).step_done
    assert time.monotonic() - sent >= 0.2
    assert (done.workflow_id, done.epoch, done.step_id, done.WhichOneof("outcome")) == (
        "sleeper",
        1,
        "1",
        None,
    )
    # Asked again (a replay), the ended sleep is answered at once with the recorded outcome.
    await worker.send(wait("sleeper", "1", sleep=wpb.SleepCondition(duration=seconds(60))))
    assert (await worker.next_of("step_done")).step_done.step_id == "1"
    [step] = (await stub.ListSteps(cpb.ListStepsRequest(workflow_id="sleeper"))).steps
    assert (step.kind, step.status, step.step_name) == (
        pb.STEP_KIND_SLEEP,
        pb.STEP_STATUS_SUCCEEDED,
        "stepline.sleep",
    )
    worker.close()


async def test_recv_takes_a_message_sent_by_a_client_and_a_timeout_ends_another(
    channel: grpc.aio.Channel, stub: cpb_grpc.WorkflowServiceAsyncStub, conn: asyncpg.Connection
) -> None:
    worker = RawWorker(channel)
    await worker.register()
    await started(stub, worker, "mailbox")
    await worker.send(wait("mailbox", "1", recv=wpb.RecvCondition(topic="t")))
    await stub.Send(cpb.SendRequest(workflow_id="mailbox", topic="t", message=pb.Payload(data=b'"hi"')))
    done = (await worker.next_of("step_done")).step_done
    assert (done.step_id, done.output.data, done.timed_out) == ("1", b'"hi"', False)
    await worker.send(wait("mailbox", "2", recv=wpb.RecvCondition(topic="t", timeout=seconds(0.1))))
    done = (await worker.next_of("step_done")).step_done
    assert (done.step_id, done.HasField("output"), done.timed_out) == ("2", False, True)
    assert await conn.fetchval("SELECT consumed_by FROM messages") == "1"
    duplicate = await stub.Send(
        cpb.SendRequest(workflow_id="mailbox", message=pb.Payload(data=b"1"), idempotency_key="k")
    )
    again = await stub.Send(
        cpb.SendRequest(workflow_id="mailbox", message=pb.Payload(data=b"1"), idempotency_key="k")
    )
    assert (duplicate.duplicate, again.duplicate) == (False, True)
    worker.close()


async def test_send_set_event_and_get_event(
    channel: grpc.aio.Channel, stub: cpb_grpc.WorkflowServiceAsyncStub
) -> None:
    worker = RawWorker(channel)
    await worker.register()
    await started(stub, worker, "a")
    await started(stub, worker, "b")
    await worker.send(wait("b", "1", get_event=wpb.EventCondition(workflow_id="a", key="k")))
    await worker.send(
        event(
            set_event=wpb.SetEvent(
                workflow_id="a", epoch=1, step_id="1", key="k", value=pb.Payload(data=b"42")
            )
        )
    )
    answers = {(d.step_done.workflow_id, d.step_done.step_id): d.step_done for d in [
        await worker.next_of("step_done"), await worker.next_of("step_done")
    ]}  # fmt: skip
    assert answers[("b", "1")].output.data == b"42"
    assert not answers[("a", "1")].HasField("error")
    got = await stub.GetEvent(cpb.GetEventRequest(workflow_id="a", key="k", timeout_ms=0))
    assert (got.found, got.value.data) == (True, b"42")
    await worker.send(
        event(
            send=wpb.Send(
                workflow_id="a", epoch=1, step_id="2", destination_id="ghost", message=pb.Payload(data=b"1")
            )
        )
    )
    failed = (await worker.next_of("step_done")).step_done
    assert (failed.error.type, failed.error.message) == (
        "stepline.WorkflowNotFoundError",
        "workflow 'ghost' does not exist",
    )
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.GetEvent(cpb.GetEventRequest(workflow_id="ghost", key="k"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    worker.close()


async def test_a_suspended_workflow_is_handed_out_again_when_its_wait_ends(
    channel: grpc.aio.Channel, stub: cpb_grpc.WorkflowServiceAsyncStub, conn: asyncpg.Connection
) -> None:
    worker = RawWorker(channel)
    await worker.register()
    await started(stub, worker, "napping")
    await worker.send(wait("napping", "1", recv=wpb.RecvCondition()))
    await worker.send(
        event(idle=wpb.Idle(workflow_id="napping", epoch=1)),
        event(suspend=wpb.Suspend(workflow_id="napping", epoch=1, waiting_on=["1"])),
    )
    await eventually(
        lambda: conn.fetchval("SELECT suspended FROM workflows WHERE workflow_id = 'napping'"),
        what="the workflow suspended",
    )
    assert await conn.fetchval("SELECT owner_id FROM workflows WHERE workflow_id = 'napping'") is None
    await stub.Send(cpb.SendRequest(workflow_id="napping", message=pb.Payload(data=b'"wake"')))
    again = (await worker.next_of("assignment")).assignment
    assert again.epoch == 2
    [step] = again.steps
    assert (step.kind, step.status, step.output.data) == (
        pb.STEP_KIND_RECV,
        pb.STEP_STATUS_SUCCEEDED,
        b'"wake"',
    )
    info = (await stub.GetWorkflow(cpb.GetWorkflowRequest(workflow_id="napping"))).workflow
    assert (info.suspended, info.recovery_attempts) == (False, 0)
    worker.close()


async def test_a_wait_from_a_stale_epoch_is_refused(
    channel: grpc.aio.Channel, stub: cpb_grpc.WorkflowServiceAsyncStub
) -> None:
    worker = RawWorker(channel)
    await worker.register()
    await started(stub, worker, "fenced-wait")
    await worker.send(wait("fenced-wait", "1", epoch=7, sleep=wpb.SleepCondition(duration=seconds(1))))
    abandon = (await worker.next_of("abandon")).abandon
    assert (abandon.reason, abandon.epoch) == (wpb.ABANDON_REASON_STALE_EPOCH, 7)
    steps = (await stub.ListSteps(cpb.ListStepsRequest(workflow_id="fenced-wait"))).steps
    assert list(steps) == []
    worker.close()
