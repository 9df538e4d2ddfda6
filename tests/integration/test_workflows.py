"""Workflows through a real coordinator and PostgreSQL, with a worker in this process."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import pytest

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
    from coordinator import server
    from coordinator.config import Settings

    running = await server.start(
        Settings(port=0, database_url=database_url, pool_size=4, retention_hours=0.0002)  # 0.72 s
    )
    address = f"127.0.0.1:{running.port}"
    try:
        async with Client(address) as client, Worker(address, workflows=[checkout]):
            done = await client.start_workflow("checkout", "o-8", ["h"], workflow_id="old")
            await done.result(timeout=10)
            waiting = await client.start_workflow("failing-checkout", "x", workflow_id="unfinished")

            async def gone() -> bool:
                return not await conn.fetchval("SELECT count(*) FROM workflows WHERE workflow_id = 'old'")

            deadline = asyncio.get_running_loop().time() + 30
            while not await gone():
                assert asyncio.get_running_loop().time() < deadline, "the finished workflow was never deleted"
                await asyncio.sleep(0.05)
            assert await conn.fetchval("SELECT count(*) FROM steps") == 0
            assert await waiting.status() is WorkflowStatus.ENQUEUED, "unfinished workflows are kept"
    finally:
        await running.stop(grace=0)
