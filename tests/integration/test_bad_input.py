"""Bad input gets a clear gRPC status and message, and changes nothing in the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest

from coordinator import server
from coordinator.config import Settings
from protos.stepline.v1 import client_pb2 as cpb
from protos.stepline.v1 import client_pb2_grpc as cpb_grpc
from protos.stepline.v1 import common_pb2 as pb
from protos.stepline.v1 import worker_pb2 as wpb
from protos.stepline.v1 import worker_pb2_grpc as wpb_grpc
from worker_sdk import AuthenticationError, Client, Worker, workflow

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(port=0, database_url=database_url, pool_size=4, max_payload_bytes=4096)


@pytest.fixture
async def channel(address: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(address) as ch:
        yield ch


async def snapshot(conn: asyncpg.Connection) -> tuple[list[Any], list[Any]]:
    return (
        [tuple(r) for r in await conn.fetch("SELECT * FROM workflows ORDER BY seq")],
        [tuple(r) for r in await conn.fetch("SELECT * FROM steps ORDER BY workflow_seq, step_id")],
    )


def start(name: str = "wf", workflow_id: str = "", data: bytes = b"[]", encoding: str = "json") -> Any:
    return cpb.StartWorkflowRequest(
        workflow_name=name, workflow_id=workflow_id, input=pb.Payload(data=data, encoding=encoding)
    )


BAD_STARTS = [
    pytest.param(start(data=b"{not json"), "input is not valid JSON", id="malformed-json"),
    pytest.param(start(data=b"\xff\xfe"), "input is not valid JSON", id="not-utf8"),
    pytest.param(start(data=b"[" + b"1," * 3000 + b"1]"), "the limit is 4096", id="oversized"),
    pytest.param(start(encoding="yaml"), "unknown encoding 'yaml'", id="unknown-encoding"),
    pytest.param(start(name=""), "workflow_name must not be empty", id="empty-name"),
    pytest.param(start(workflow_id="x" * 256), "255", id="long-id"),
    pytest.param(start(workflow_id="a\nb"), "control characters", id="control-chars"),
]


@pytest.mark.parametrize(("request_", "message"), BAD_STARTS)
async def test_bad_starts_are_invalid_argument(
    channel: grpc.aio.Channel, conn: asyncpg.Connection, request_: Any, message: str
) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    await stub.StartWorkflow(start(workflow_id="existing"))
    before = await snapshot(conn)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.StartWorkflow(request_)
    assert caught.value.code() == INVALID
    assert message in (caught.value.details() or "")
    assert await snapshot(conn) == before


@pytest.mark.parametrize("method", ["GetWorkflow", "AwaitWorkflow", "ListSteps"])
async def test_an_unknown_workflow_id_is_not_found(channel: grpc.aio.Channel, method: str) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    request = {
        "GetWorkflow": cpb.GetWorkflowRequest,
        "AwaitWorkflow": cpb.AwaitWorkflowRequest,
        "ListSteps": cpb.ListStepsRequest,
    }[method](workflow_id="nobody")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "workflow 'nobody' does not exist"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            cpb.ListWorkflowsRequest(page_token="garbage"),
            "page_token 'garbage' is not one this service issued",
        ),
        (cpb.ListWorkflowsRequest(page_size=5000), "page_size 5000 is over the limit of 1000"),
        (cpb.ListWorkflowsRequest(statuses=[99]), "unknown workflow status 99"),  # type: ignore[list-item]
    ],
)
async def test_bad_list_requests_are_invalid_argument(
    channel: grpc.aio.Channel, request_: Any, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await cpb_grpc.WorkflowServiceStub(channel).ListWorkflows(request_)
    assert caught.value.code() == INVALID
    assert caught.value.details() == message


async def read(call: Any) -> wpb.CoordinatorFrame:
    frame = await call.read()
    assert isinstance(frame, wpb.CoordinatorFrame)
    return frame


def register(**overrides: Any) -> wpb.WorkerFrame:
    fields: dict[str, Any] = {"worker_id": "w", "workflow_names": ["wf"], "protocol_version": 1}
    fields.update(overrides)
    return wpb.WorkerFrame(events=[wpb.WorkerEvent(register=wpb.Register(**fields))])


@pytest.mark.parametrize(
    ("first", "code", "message"),
    [
        (wpb.WorkerFrame(events=[wpb.WorkerEvent(heartbeat=wpb.Heartbeat())]), INVALID, "must be Register"),
        (register(workflow_names=[]), INVALID, "workflow_names must not be empty"),
        (register(worker_id=""), INVALID, "worker_id must not be empty"),
        (
            register(protocol_version=7),
            grpc.StatusCode.FAILED_PRECONDITION,
            "protocol version 7 is not supported",
        ),
    ],
)
async def test_a_bad_registration_ends_the_stream_with_a_status(
    channel: grpc.aio.Channel, first: wpb.WorkerFrame, code: grpc.StatusCode, message: str
) -> None:
    call = wpb_grpc.WorkerServiceStub(channel).Connect()
    await call.write(first)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")


async def test_a_malformed_step_result_is_rejected_and_the_stream_stays_up(
    channel: grpc.aio.Channel, conn: asyncpg.Connection
) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    call = wpb_grpc.WorkerServiceStub(channel).Connect()
    await call.write(register())
    registered = await read(call)
    assert registered.events[0].WhichOneof("kind") == "registered"
    await stub.StartWorkflow(start(workflow_id="victim"))
    assignment = (await read(call)).events[0].assignment
    assert assignment.workflow_id == "victim"
    before = await snapshot(conn)
    bad = wpb.StepResult(
        workflow_id="victim", epoch=assignment.epoch, step_id="1", step_name="s", attempt=1,
        output=pb.Payload(data=b"{oops", encoding="json"),
    )  # fmt: skip
    await call.write(
        wpb.WorkerFrame(events=[wpb.WorkerEvent(step_result=bad), wpb.WorkerEvent(heartbeat=wpb.Heartbeat())])
    )
    frame = await read(call)
    kinds = [e.WhichOneof("kind") for e in frame.events]
    assert kinds[0] == "rejected"
    rejected = frame.events[0].rejected
    assert (rejected.workflow_id, rejected.step_id, rejected.status.code) == ("victim", "1", INVALID.value[0])
    assert "not valid JSON" in rejected.status.message
    if "heartbeat_ack" not in kinds:  # the heartbeat was answered: the stream is alive
        assert (await read(call)).events[0].WhichOneof("kind") == "heartbeat_ack"
    assert await snapshot(conn) == before
    call.cancel()


@workflow()
async def wf() -> str:
    return "ok"


async def test_without_the_api_key_every_call_is_unauthenticated(
    database_url: str, conn: asyncpg.Connection
) -> None:
    running = await server.start(Settings(port=0, database_url=database_url, pool_size=4, api_key="s3cret"))
    address = f"127.0.0.1:{running.port}"
    try:
        before = await snapshot(conn)
        for key in (None, "wrong"):
            async with Client(address, api_key=key) as client:
                with pytest.raises(AuthenticationError, match="missing or wrong API key"):
                    await client.start_workflow("wf", workflow_id="nope")
            with pytest.raises(AuthenticationError):
                await Worker(address, workflows=[wf], api_key=key, connect_timeout=5).start()
        assert await snapshot(conn) == before
        async with (
            Client(address, api_key="s3cret") as client,
            Worker(address, workflows=[wf], api_key="s3cret"),
        ):
            assert await (await client.start_workflow("wf", workflow_id="yes")).result(timeout=10) == "ok"
    finally:
        await running.stop(grace=0)
