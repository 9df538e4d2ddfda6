"""Cancel through a real coordinator and PostgreSQL, with workers in this process."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from coordinator import server
from coordinator.config import Settings
from tests.e2e.processes import eventually
from tests.ids import unique
from worker_sdk import (
    Client,
    StepStatus,
    Worker,
    Workflow,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowStatus,
    recv,
    step,
    workflow,
)

effects: Counter[str] = Counter()
release = asyncio.Event()


@pytest.fixture(autouse=True)
def _clear() -> None:
    global release
    effects.clear()
    release = asyncio.Event()  # one per test: an Event belongs to the loop that first waits on it


@step()
async def slow_body() -> str:
    effects["body began"] += 1
    await release.wait()
    effects["body finished"] += 1
    return "done"


@step()
async def after() -> None:
    effects["after"] += 1


@workflow(name="cancel.slow")
async def slow() -> str:
    await slow_body()
    await after()
    return "finished"


@workflow(name="cancel.listener")
async def listener() -> Any:
    return await recv()


@workflow(name="cancel.parent")
async def parent() -> list[Any]:
    return list(await asyncio.gather(listener(), listener(), listener()))


WORKFLOWS: list[Workflow[Any, Any]] = [slow, listener, parent]


async def status(client: Client, workflow_id: str) -> WorkflowStatus | None:
    try:
        return (await client.get_workflow(workflow_id)).status
    except WorkflowNotFoundError:
        return None


async def test_a_parent_and_its_three_children_on_two_workers_all_end_cancelled(
    address: str, client: Client
) -> None:
    async with (
        Worker(address, workflows=[parent], suspend_after=None) as one,
        Worker(address, workflows=[listener], suspend_after=None) as two,
    ):
        handle = await client.start_workflow(parent, workflow_id=unique("parent"))
        children = [f"{handle.workflow_id}/{i}" for i in (1, 3, 5)]

        async def all_running() -> bool:
            return all([await status(client, c) is WorkflowStatus.RUNNING for c in children])

        await eventually(all_running, what="three children running")
        owners = {(await client.get_workflow(c)).owner_worker_id for c in [handle.workflow_id, *children]}
        assert owners == {one.worker_id, two.worker_id}

        cancelled = await client.cancel(handle.workflow_id, "changed my mind")
        assert sorted(cancelled) == sorted([handle.workflow_id, *children])
        for workflow_id in [handle.workflow_id, *children]:
            info = await client.get_workflow(workflow_id)
            assert info.status is WorkflowStatus.CANCELLED
            assert info.owner_worker_id is None
        with pytest.raises(WorkflowFailedError) as failed:
            await handle.result(timeout=10)
        assert isinstance(failed.value.__cause__, WorkflowCancelledError)
        assert failed.value.message == "changed my mind"
        # The workers let go of them: nothing of theirs is running any more.
        await eventually(lambda: _idle(one, two), what="the workers holding nothing")


async def _idle(*workers: Worker) -> bool:
    return all(w.running == 0 for w in workers)


async def test_a_suspended_workflow_is_cancelled_with_no_worker_alive(
    address: str, client: Client, conn: asyncpg.Connection
) -> None:
    async with Worker(address, workflows=WORKFLOWS, suspend_after=0):
        handle = await client.start_workflow(listener, workflow_id=unique("suspended"))

        async def suspended() -> bool:
            return (await client.get_workflow(handle.workflow_id)).suspended

        await eventually(suspended, what="the workflow suspended")
    assert await client.cancel(handle.workflow_id) == [handle.workflow_id]
    info = await client.get_workflow(handle.workflow_id)
    assert (info.status, info.suspended) == (WorkflowStatus.CANCELLED, False)
    assert info.error is not None
    assert (info.error.type, info.error.message) == ("stepline.WorkflowCancelledError", "cancelled")
    # A worker that comes afterwards is given nothing of it.
    async with Worker(address, workflows=WORKFLOWS, suspend_after=0) as late:
        await asyncio.sleep(0)
        assert late.running == 0
    assert await client.cancel(handle.workflow_id) == []  # finished: left as it is


async def test_a_running_step_body_finishes_and_the_workflow_stops_at_its_next_call(
    address: str, client: Client
) -> None:
    async with Worker(address, workflows=WORKFLOWS, suspend_after=None) as worker:
        handle = await client.start_workflow(slow, workflow_id=unique("slow"))
        await eventually(lambda: _began(), what="the step body running")
        await client.cancel(handle.workflow_id)
        assert await status(client, handle.workflow_id) is WorkflowStatus.CANCELLED
        release.set()
        await eventually(lambda: _idle(worker), what="the execution stopped")
    assert effects == Counter({"body began": 1, "body finished": 1})
    # What the cancelled execution reported afterwards was not recorded.
    steps = await client.list_steps(handle.workflow_id)
    assert all(s.status is not StepStatus.SUCCEEDED for s in steps)


async def _began() -> bool:
    return effects["body began"] == 1


async def test_cancelling_an_unknown_workflow_is_not_found(client: Client) -> None:
    with pytest.raises(WorkflowNotFoundError):
        await client.cancel("no-such-workflow")


async def test_a_cancel_through_another_coordinator_stops_the_execution(settings: Settings) -> None:
    quiet = replace(settings, sweep_ms=60_000)  # what tells coordinator A is the hint
    a, b = await server.start(quiet), await server.start(quiet)
    client_b = Client(f"127.0.0.1:{b.port}")
    try:
        async with Worker(f"127.0.0.1:{a.port}", workflows=WORKFLOWS, suspend_after=None) as worker:
            handle = await client_b.start_workflow(slow, workflow_id=unique("far"))
            await eventually(_began, what="the step body running")
            assert await client_b.cancel(handle.workflow_id) == [handle.workflow_id]
            release.set()
            await eventually(lambda: _idle(worker), what="the execution on coordinator A stopped")
        assert effects == Counter({"body began": 1, "body finished": 1})
    finally:
        await client_b.close()
        for r in (a, b):
            await r.stop(grace=0)
