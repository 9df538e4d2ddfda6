"""Workflows through a real coordinator and PostgreSQL, with a worker in this process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg
import grpc
import pytest
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc
from stepline.v1 import common_pb2 as pb

from coordinator import server
from coordinator.config import Settings
from worker_sdk import (
    Client,
    SerializationError,
    StepStatus,
    Worker,
    WorkflowConflictError,
    WorkflowFailedError,
    WorkflowStatus,
    step,
    workflow,
)

side_effects: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _clear() -> None:
    side_effects.clear()


@step()
async def reserve(sku: str) -> bool:
    side_effects[f"reserve {sku}"] += 1
    return True


@step()
async def charge(order_id: str, cents: int) -> str:
    side_effects[f"charge {order_id}"] += 1
    return f"receipt-{order_id}-{cents}"


@workflow()
async def checkout(order_id: str, skus: list[str]) -> dict[str, Any]:
    ok = await asyncio.gather(*(reserve(s) for s in skus))
    receipt = await charge(order_id, 1250)
    return {"reserved": list(ok), "receipt": receipt}


class OutOfStock(Exception):
    pass


@step()
async def fails(sku: str) -> None:
    raise OutOfStock(sku)


@workflow(name="failing-checkout")
async def failing(sku: str) -> None:
    await fails(sku)


@step()
async def unencodable() -> object:
    return {1, 2, 3}  # a set: JSON cannot encode it


@workflow()
async def survives_bad_result() -> str:
    try:
        await unencodable()
    except SerializationError as exc:
        return f"caught: {exc}"
    return "not caught"


async def test_the_issue_example_in_process_and_by_name(address: str, client: Client) -> None:
    async with Worker(address, workflows=[checkout]):
        assert await checkout("o-1", ["a", "b"]) == {"reserved": [True, True], "receipt": "receipt-o-1-1250"}
        handle = await client.start_workflow("checkout", "o-2", ["c"], workflow_id="order-o-2")
        assert handle.workflow_id == "order-o-2"
        assert await handle.result(timeout=10) == {"reserved": [True], "receipt": "receipt-o-2-1250"}
        assert await handle.status() is WorkflowStatus.SUCCEEDED
        steps = await handle.steps()
    assert [(s.step_id, s.step_name, s.status, s.output) for s in steps] == [
        ("1", "reserve", StepStatus.SUCCEEDED, True),
        ("2", "charge", StepStatus.SUCCEEDED, "receipt-o-2-1250"),
    ]
    assert side_effects == Counter(
        {"reserve a": 1, "reserve b": 1, "reserve c": 1, "charge o-1": 1, "charge o-2": 1}
    )


async def test_a_direct_call_with_an_existing_id_returns_the_recorded_result(address: str) -> None:
    async with Worker(address, workflows=[checkout]):
        first = await checkout.with_id("same")("o-3", ["d"])
        again = await checkout.with_id("same")("o-3", ["d"])
    assert first == again
    assert side_effects["charge o-3"] == 1


async def test_a_workflow_waits_enqueued_until_a_worker_serves_its_name(address: str, client: Client) -> None:
    handle = await client.start_workflow("checkout", "o-4", ["e"], workflow_id="waits")
    assert await handle.status() is WorkflowStatus.ENQUEUED
    async with Worker(address, workflows=[checkout]):
        assert await handle.result(timeout=10) == {"reserved": [True], "receipt": "receipt-o-4-1250"}


async def test_twenty_concurrent_starts_of_one_id_make_one_run(
    address: str, client: Client, conn: asyncpg.Connection
) -> None:
    async with Worker(address, workflows=[checkout]):
        handles = await asyncio.gather(
            *(client.start_workflow("checkout", "o-5", ["f"], workflow_id="once") for _ in range(20))
        )
        results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
    assert {h.workflow_id for h in handles} == {"once"}
    assert all(r == results[0] for r in results)
    assert await conn.fetchval("SELECT count(*) FROM workflows WHERE workflow_id = 'once'") == 1
    assert side_effects == Counter({"reserve f": 1, "charge o-5": 1})


def checkout_start(workflow_id: str, order_id: str, skus: list[str]) -> cpb.StartWorkflowRequest:
    data = json.dumps({"args": [order_id, skus], "kwargs": {}}).encode()
    return cpb.StartWorkflowRequest(
        workflow_name="checkout", workflow_id=workflow_id, input=pb.Payload(data=data, encoding="json")
    )


async def start_on_own_channels(
    addresses: Sequence[str], request: cpb.StartWorkflowRequest
) -> list[cpb.StartWorkflowResponse]:
    """One StartWorkflow RPC per address, each on a channel of its own, all sent together."""
    async with contextlib.AsyncExitStack() as stack:
        # A subchannel pool per channel: a connection of its own each, like separate clients.
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [
            await stack.enter_async_context(grpc.aio.insecure_channel(a, options=options)) for a in addresses
        ]
        # Connected first, so that the calls themselves go out at the same time.
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), 10) for ch in channels))
        stubs = [cpb_grpc.WorkflowServiceStub(ch) for ch in channels]
        return list(await asyncio.gather(*(s.StartWorkflow(request, timeout=10) for s in stubs)))


async def test_twenty_concurrent_start_rpcs_of_one_id_create_it_once(
    address: str, conn: asyncpg.Connection
) -> None:
    workflow_id = f"raw-once-{uuid.uuid4().hex[:8]}"
    responses = await start_on_own_channels([address] * 20, checkout_start(workflow_id, "o-10", ["i"]))
    assert [r.created for r in responses].count(True) == 1
    assert {r.workflow.workflow_id for r in responses} == {workflow_id}
    # The same record for every caller, the creator's included (same created_at, input, ...).
    assert all(r.workflow == responses[0].workflow for r in responses)
    assert await conn.fetchval("SELECT count(*) FROM workflows") == 1


async def test_twenty_starts_of_one_id_in_one_batch_create_it_once(
    address: str, conn: asyncpg.Connection
) -> None:
    workflow_id = f"batch-once-{uuid.uuid4().hex[:8]}"
    request = cpb.StartWorkflowsRequest(requests=[checkout_start(workflow_id, "o-12", ["l"])] * 20)
    async with grpc.aio.insecure_channel(address) as channel:
        response = await cpb_grpc.WorkflowServiceStub(channel).StartWorkflows(request, timeout=10)
    assert [o.WhichOneof("outcome") for o in response.outcomes] == ["started"] * 20
    assert [o.started.created for o in response.outcomes].count(True) == 1
    assert all(o.started.workflow == response.outcomes[0].started.workflow for o in response.outcomes)
    assert await conn.fetchval("SELECT count(*) FROM workflows") == 1


async def test_concurrent_starts_of_one_id_through_two_coordinators_create_and_run_it_once(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    coordinators = [await server.start(settings)]
    try:
        coordinators.append(await server.start(settings))
        addresses = [f"127.0.0.1:{c.port}" for c in coordinators]
        workflow_id = f"shared-once-{uuid.uuid4().hex[:8]}"
        responses = await start_on_own_channels(
            addresses * 10, checkout_start(workflow_id, "o-11", ["j", "k"])
        )
        created = [a for a, r in zip(addresses * 10, responses, strict=True) if r.created]
        assert len(created) == 1
        assert all(r.workflow == responses[0].workflow for r in responses)
        assert responses[0].workflow.workflow_id == workflow_id
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 1

        # The worker connects to the coordinator that did not record the workflow: it still
        # gets it, from the database, and runs it once.
        other = next(a for a in addresses if a != created[0])
        async with Client(other) as client, Worker(other, workflows=[checkout]):
            result = await client.get_handle(workflow_id).result(timeout=10)
            info = await client.get_workflow(workflow_id)
        assert result == {"reserved": [True, True], "receipt": "receipt-o-11-1250"}
        assert (info.status, info.epoch, info.recovery_attempts) == (WorkflowStatus.SUCCEEDED, 1, 0)
        assert side_effects == Counter({"reserve j": 1, "reserve k": 1, "charge o-11": 1})
        steps = await conn.fetch("SELECT step_id, name, epoch FROM steps ORDER BY step_id")
        assert [tuple(r) for r in steps] == [("1", "reserve", 1), ("2", "reserve", 1), ("3", "charge", 1)]
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 1
    finally:
        for c in coordinators:
            await c.stop(grace=0)


async def test_the_same_id_under_another_name_is_a_conflict(address: str, client: Client) -> None:
    await client.start_workflow("checkout", "o-6", [], workflow_id="taken")
    with pytest.raises(WorkflowConflictError, match="already belongs to workflow 'checkout'"):
        await client.start_workflow("failing-checkout", "x", workflow_id="taken")


async def test_a_step_error_is_recorded_and_reraised_as_its_own_type(address: str, client: Client) -> None:
    async with Worker(address, workflows=[failing]):
        with pytest.raises(OutOfStock, match="sku-9"):
            await failing.with_id("fail-1")("sku-9")
        handle = client.get_handle("fail-1")
        with pytest.raises(WorkflowFailedError) as caught:
            await handle.result(timeout=10)
    assert caught.value.error_type.endswith("OutOfStock")
    assert isinstance(caught.value.__cause__, OutOfStock)
    [recorded] = await handle.steps()
    assert recorded.status is StepStatus.FAILED
    assert recorded.error is not None
    assert recorded.error.message == "sku-9"
    assert "OutOfStock" in recorded.error.traceback


async def test_an_unserialisable_step_result_fails_that_step_and_the_worker_survives(
    address: str, client: Client
) -> None:
    async with Worker(address, workflows=[survives_bad_result, checkout]):
        message = await survives_bad_result.with_id("bad-result")()
        assert message.startswith("caught: the result of step 'unencodable' cannot be encoded as JSON")
        # The same worker goes on serving.
        assert (await checkout("o-7", ["g"]))["receipt"] == "receipt-o-7-1250"
    [recorded] = await client.list_steps("bad-result")
    assert recorded.status is StepStatus.FAILED
    assert recorded.error is not None
    assert recorded.error.type == "stepline.SerializationError"


async def test_list_workflows_filters_and_pages(address: str, client: Client) -> None:
    for i in range(5):
        await client.start_workflow("checkout", f"o-{i}", [], workflow_id=f"list-{i}")
    await client.start_workflow("failing-checkout", "x", workflow_id="list-other")
    page, token = await client.list_workflows(name="checkout", limit=2)
    assert [w.workflow_id for w in page] == ["list-0", "list-1"]
    assert token
    rest = [w.workflow_id async for w in client.iter_workflows(name="checkout", limit=2, page_token=token)]
    assert rest == ["list-2", "list-3", "list-4"]
    newest, _ = await client.list_workflows(descending=True, limit=1)
    assert [w.workflow_id for w in newest] == ["list-other"]
    enqueued, _ = await client.list_workflows(status=WorkflowStatus.ENQUEUED, include_payloads=True)
    assert len(enqueued) == 6
    assert enqueued[0].input == {"args": ["o-0", []], "kwargs": {}}
    assert (await client.list_workflows(status=WorkflowStatus.SUCCEEDED))[0] == []


async def test_finished_workflows_are_deleted_after_the_retention(
    database_url: str, conn: asyncpg.Connection
) -> None:
    running = await server.start(
        Settings(port=0, database_url=database_url, pool_size=4, retention_hours=0.0002)  # 0.72 s
    )
    address = f"127.0.0.1:{running.port}"
    try:
        async with Client(address) as client, Worker(address, workflows=[checkout]):
            done = await client.start_workflow("checkout", "o-8", ["h"], workflow_id="old")
            await done.result(timeout=10)
            # What a finished workflow may leave behind goes with it.
            seq = await conn.fetchval("SELECT seq FROM workflows WHERE workflow_id = 'old'")
            await conn.execute(
                "INSERT INTO messages (workflow_seq, topic, data, encoding) VALUES ($1, '', 'null', 'json')",
                seq,
            )
            await conn.execute("INSERT INTO workflow_events VALUES ($1, 'k', 'null', 'json')", seq)
            await conn.execute("INSERT INTO timers VALUES ($1, '', now() + interval '1 day')", seq)
            waiting = await client.start_workflow("failing-checkout", "x", workflow_id="unfinished")

            async def gone() -> bool:
                return not await conn.fetchval("SELECT count(*) FROM workflows WHERE workflow_id = 'old'")

            deadline = asyncio.get_running_loop().time() + 30
            while not await gone():
                assert asyncio.get_running_loop().time() < deadline, "the finished workflow was never deleted"
                await asyncio.sleep(0.05)
            assert await conn.fetchval("SELECT count(*) FROM steps") == 0
            for table in ("messages", "workflow_events", "timers"):
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
            assert await waiting.status() is WorkflowStatus.ENQUEUED, "unfinished workflows are kept"
    finally:
        await running.stop(grace=0)


async def test_the_coordinator_states_its_limits_and_protocol_versions(
    address: str, settings: Settings, client: Client
) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        info = await cpb_grpc.WorkflowServiceStub(channel).GetServerInfo(cpb.GetServerInfoRequest())
    assert list(info.protocol_versions) == [pb.PROTOCOL_VERSION_1]
    assert info.server_version
    assert info.limits.max_payload_bytes == settings.max_payload_bytes
    assert (info.limits.max_starts_per_call, info.limits.max_awaited_per_call) == (1000, 10_000)
    assert (info.limits.max_page_size, info.limits.max_identifier_length) == (1000, 255)
    assert info.limits.max_message_bytes == 64 << 20
    # The Client asks once and keeps the answer for its batches.
    assert (await client._limits()).max_starts_per_call == 1000
