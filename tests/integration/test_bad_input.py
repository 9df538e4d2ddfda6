"""Bad input gets a clear gRPC status and message, and changes nothing in the database."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc
from stepline.v1 import common_pb2 as pb
from stepline.v1 import worker_pb2 as wpb
from stepline.v1 import worker_pb2_grpc as wpb_grpc

from coordinator import server
from coordinator.config import Settings
from tests.protocol import RawWorker, heartbeat, register_frame, step_error, step_result
from worker_sdk import AuthenticationError, Client, Worker, workflow

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(port=0, database_url=database_url, pool_size=4, max_payload_bytes=4096)


async def snapshot(conn: asyncpg.Connection) -> tuple[list[Any], ...]:
    return (
        [tuple(r) for r in await conn.fetch("SELECT * FROM workflows ORDER BY seq")],
        [tuple(r) for r in await conn.fetch("SELECT * FROM steps ORDER BY workflow_seq, step_id")],
        [tuple(r) for r in await conn.fetch("SELECT * FROM messages ORDER BY seq")],
        [tuple(r) for r in await conn.fetch("SELECT * FROM workflow_events ORDER BY workflow_seq, key")],
        [tuple(r) for r in await conn.fetch("SELECT * FROM timers ORDER BY workflow_seq, step_id")],
        # Without expires_at, which the coordinator renews on its own a few times per lease.
        [
            tuple(r)
            for r in await conn.fetch(
                "SELECT worker_id, coordinator_id, session_id, connected_at FROM worker_leases"
                " ORDER BY worker_id"
            )
        ],
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
    pytest.param(
        start(name="n" * 256), "workflow_name is 256 characters long; the limit is 255", id="long-name"
    ),
    pytest.param(
        start(workflow_id="x" * 256), "workflow_id is 256 characters long; the limit is 255", id="long-id"
    ),
    pytest.param(start(workflow_id="a\nb"), "control characters", id="control-chars"),
    pytest.param(
        cpb.StartWorkflowRequest(workflow_name="wf", timeout=Duration(seconds=-1)),
        "timeout must not be negative",
        id="negative-timeout",
    ),
]


def send(workflow_id: str = "existing", data: bytes = b'"m"', topic: str = "") -> cpb.SendRequest:
    return cpb.SendRequest(workflow_id=workflow_id, topic=topic, message=pb.Payload(data=data))


BAD_MESSAGES = [
    pytest.param("Send", send("nobody"), NOT_FOUND, "workflow 'nobody' does not exist", id="send-unknown"),
    pytest.param("Send", send(""), INVALID, "workflow_id must not be empty", id="send-empty-id"),
    pytest.param("Send", send(data=b"[" + b"1," * 3000 + b"1]"), INVALID, "the limit is 4096", id="send-big"),
    pytest.param("Send", send(data=b"{oops"), INVALID, "message is not valid JSON", id="send-bad-json"),
    pytest.param("Send", send(topic="a\nb"), INVALID, "control characters", id="send-bad-topic"),
    pytest.param(
        "GetEvent", cpb.GetEventRequest(workflow_id="existing"), INVALID, "key must not be empty", id="no-key"
    ),
    pytest.param(
        "GetEvent",
        cpb.GetEventRequest(workflow_id="nobody", key="k"),
        NOT_FOUND,
        "workflow 'nobody' does not exist",
        id="event-unknown",
    ),
]


@pytest.mark.parametrize(("method", "request_", "code", "message"), BAD_MESSAGES)
async def test_bad_messages_and_event_reads_are_refused(
    channel: grpc.aio.Channel,
    conn: asyncpg.Connection,
    method: str,
    request_: Any,
    code: grpc.StatusCode,
    message: str,
) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    await stub.StartWorkflow(start(workflow_id="existing"))
    before = await snapshot(conn)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(request_)
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")
    assert await snapshot(conn) == before


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


LOOKUPS = {
    "GetWorkflow": cpb.GetWorkflowRequest,
    "AwaitWorkflow": cpb.AwaitWorkflowRequest,
    "ListSteps": cpb.ListStepsRequest,
}


@pytest.mark.parametrize("method", list(LOOKUPS))
@pytest.mark.parametrize(
    ("workflow_id", "code", "message"),
    [
        pytest.param("nobody", NOT_FOUND, "workflow 'nobody' does not exist", id="unknown"),
        pytest.param("", INVALID, "workflow_id must not be empty", id="empty"),
    ],
)
async def test_looking_up_a_bad_workflow_id_is_refused(
    channel: grpc.aio.Channel,
    conn: asyncpg.Connection,
    method: str,
    workflow_id: str,
    code: grpc.StatusCode,
    message: str,
) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    await stub.StartWorkflow(start(workflow_id="existing"))
    before = await snapshot(conn)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(LOOKUPS[method](workflow_id=workflow_id))
    assert caught.value.code() == code
    assert caught.value.details() == message
    assert await snapshot(conn) == before


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


@pytest.mark.parametrize(
    ("first", "code", "message"),
    [
        (wpb.WorkerFrame(events=[heartbeat(0)]), INVALID, "must be Register"),
        (register_frame(workflow_names=[]), INVALID, "workflow_names must not be empty"),
        (register_frame(worker_id=""), INVALID, "worker_id must not be empty"),
        (register_frame(version="v" * 256), INVALID, "Register.version is 256 characters long"),
        (
            register_frame(auto_upgrade=["wf", "other"]),
            INVALID,
            "Register.auto_upgrade names workflows it does not serve: other",
        ),
        (
            register_frame(protocol_version=7),
            grpc.StatusCode.FAILED_PRECONDITION,
            "protocol version 7 is not supported",
        ),
    ],
)
async def test_a_bad_registration_ends_the_stream_with_a_status(
    channel: grpc.aio.Channel,
    conn: asyncpg.Connection,
    first: wpb.WorkerFrame,
    code: grpc.StatusCode,
    message: str,
) -> None:
    await cpb_grpc.WorkflowServiceStub(channel).StartWorkflow(start(workflow_id="existing"))
    before = await snapshot(conn)
    call = wpb_grpc.WorkerServiceStub(channel).Connect()
    await call.write(first)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")
    assert await snapshot(conn) == before, "a refused registration must not take a lease or a workflow"


OVERSIZED = b'"' + b"x" * 5000 + b'"'  # 5002 bytes of valid JSON, over the fixture's 4096

BAD_EVENTS = [
    pytest.param(
        step_result("victim", data=b"{oops"), INVALID, "output of step '1' is not valid JSON", id="bad-json"
    ),
    pytest.param(step_result("victim", step_id=""), INVALID, "step_id must not be empty", id="empty-step-id"),
    pytest.param(
        step_result("victim", step_id="s" * 256),
        INVALID,
        "step_id is 256 characters long; the limit is 255",
        id="long-step-id",
    ),
    pytest.param(
        step_result("victim", data=OVERSIZED),
        INVALID,
        "output of step '1' is 5002 bytes; the limit is 4096",
        id="oversized-step-output",
    ),
    pytest.param(step_result("ghost"), NOT_FOUND, "workflow 'ghost' does not exist", id="unknown-workflow"),
    pytest.param(
        wpb.WorkerEvent(
            workflow_result=wpb.WorkflowResult(
                workflow_id="victim", epoch=1, output=pb.Payload(data=OVERSIZED, encoding="json")
            )
        ),
        INVALID,
        "workflow output is 5002 bytes; the limit is 4096",
        id="oversized-workflow-output",
    ),
    pytest.param(
        wpb.WorkerEvent(wait=wpb.Wait(workflow_id="victim", epoch=1, step_id="1")),
        INVALID,
        "Wait needs a condition",
        id="wait-without-condition",
    ),
    pytest.param(
        wpb.WorkerEvent(
            wait=wpb.Wait(
                workflow_id="victim",
                epoch=1,
                step_id="1",
                sleep=wpb.SleepCondition(duration=Duration(seconds=-5)),
            )
        ),
        INVALID,
        "sleep duration must not be negative",
        id="negative-sleep",
    ),
    pytest.param(
        wpb.WorkerEvent(
            send=wpb.Send(workflow_id="victim", epoch=1, step_id="1", message=pb.Payload(data=b"1"))
        ),
        INVALID,
        "destination_id must not be empty",
        id="send-nowhere",
    ),
    pytest.param(
        wpb.WorkerEvent(set_event=wpb.SetEvent(workflow_id="victim", epoch=1, step_id="1")),
        INVALID,
        "event key must not be empty",
        id="event-without-key",
    ),
]


@pytest.mark.parametrize(("event", "code", "message"), BAD_EVENTS)
async def test_a_bad_worker_event_is_rejected_and_the_stream_stays_up(
    channel: grpc.aio.Channel,
    conn: asyncpg.Connection,
    event: wpb.WorkerEvent,
    code: grpc.StatusCode,
    message: str,
) -> None:
    worker = RawWorker(channel)
    await worker.register()
    await cpb_grpc.WorkflowServiceStub(channel).StartWorkflow(start(workflow_id="victim"))
    assignment = (await worker.next("assignment")).assignment
    assert (assignment.workflow_id, assignment.epoch) == ("victim", 1)
    before = await snapshot(conn)

    await worker.send(event)
    rejected = (await worker.next("rejected")).rejected
    sent = getattr(event, event.WhichOneof("kind") or "")
    assert (rejected.workflow_id, rejected.epoch, rejected.step_id) == (
        sent.workflow_id,
        1,
        getattr(sent, "step_id", ""),
    )
    assert rejected.status.code == code.value[0]
    assert message in rejected.status.message
    assert await snapshot(conn) == before

    # The stream is still up: a heartbeat is answered, and a good result is recorded.
    await worker.send(heartbeat(7))
    assert (await worker.next("heartbeat_ack")).heartbeat_ack.sequence == 7
    await worker.send(step_result("victim", "2"))
    assert (await worker.next("step_ack")).step_ack.step_id == "2"
    assert [tuple(r) for r in await conn.fetch("SELECT step_id, output FROM steps")] == [("2", b'"ok"')]
    worker.close()


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
                with pytest.raises(AuthenticationError, match="missing or unknown token"):
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


async def test_a_value_postgresql_refuses_fails_only_its_event_and_the_write_path_goes_on(
    coordinator: server.Running, channel: grpc.aio.Channel, conn: asyncpg.Connection
) -> None:
    worker = RawWorker(channel)
    await worker.register()
    stub = cpb_grpc.WorkflowServiceStub(channel)
    for workflow_id in ("victim", "bystander"):
        await stub.StartWorkflow(start(workflow_id=workflow_id))
        await worker.next("assignment")

    # One frame, so one batch: jsonb cannot hold U+0000, so PostgreSQL refuses the first
    # event's error; the events beside it in the batch must still be written.
    frame = [
        step_error("victim", "1", "bad \x00 byte"),
        step_result("victim", "2"),
        step_result("bystander", "1"),
    ]
    await worker.send(*frame)
    answers = [await worker.next_any() for _ in range(3)]
    rejected = [a.rejected for a in answers if a.WhichOneof("kind") == "rejected"]
    acked = {
        (a.step_ack.workflow_id, a.step_ack.step_id) for a in answers if a.WhichOneof("kind") == "step_ack"
    }
    assert acked == {("victim", "2"), ("bystander", "1")}
    assert [(r.workflow_id, r.step_id, r.status.code) for r in rejected] == [
        ("victim", "1", INVALID.value[0])
    ]
    assert "PostgreSQL refused the values" in rejected[0].status.message
    recorded = await conn.fetch(
        "SELECT w.workflow_id, s.step_id FROM steps s JOIN workflows w ON w.seq = s.workflow_seq"
    )
    assert sorted(tuple(r) for r in recorded) == [("bystander", "1"), ("victim", "2")]

    # Not an outage: health stays SERVING and the next batch is written as usual.
    assert coordinator.db.healthy
    health: Any = health_pb2_grpc.HealthStub(channel)  # its typing stubs omit the methods
    response = await health.Check(health_pb2.HealthCheckRequest(service="stepline.v1.WorkerService"))
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    await worker.send(step_result("victim", "3"))
    assert (await worker.next("step_ack")).step_ack.step_id == "3"
    worker.close()
