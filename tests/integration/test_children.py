"""Child workflows through a real coordinator and PostgreSQL, with workers in this process."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from coordinator import server
from coordinator.config import Settings
from tests.e2e.processes import eventually
from tests.ids import unique
from worker_sdk import (
    ChildHandle,
    Client,
    StepKind,
    StepStatus,
    Worker,
    Workflow,
    WorkflowFailedError,
    await_workflow,
    recv,
    sleep,
    start_child,
    step,
    workflow,
)

effects: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _clear() -> None:
    effects.clear()


@step()
async def count(what: str) -> str:
    effects[what] += 1
    return what


@workflow(name="kids.double")
async def double(x: int) -> int:
    await count(f"double {x}")
    return 2 * x


@workflow(name="kids.broken")
async def broken(message: str) -> None:
    raise ValueError(message)


@workflow(name="kids.napping")
async def napping(seconds: float) -> str:
    await sleep(seconds)
    return "rested"


@workflow(name="kids.listening")
async def listening() -> Any:
    return await recv()


@workflow(name="kids.parent")
async def parent(xs: list[int]) -> list[int]:
    return list(await asyncio.gather(*(double(x) for x in xs)))


@workflow(name="kids.catcher")
async def catcher() -> str:
    try:
        await broken("no luck")
    except ValueError as exc:
        return f"caught: {exc}"
    return "not raised"


@workflow(name="kids.by_name")
async def by_name(name: str, x: int, child_id: str | None) -> list[Any]:
    handle: ChildHandle[Any] = await start_child(name, x, workflow_id=child_id)
    return [handle.workflow_id, await handle.result()]


@workflow(name="kids.awaiter")
async def awaiter(target: str) -> Any:
    return await await_workflow(target)


@workflow(name="kids.sleepy_parent")
async def sleepy_parent() -> str:
    return await napping(0.3)


WORKFLOWS: list[Workflow[Any, Any]] = [
    double,
    broken,
    napping,
    listening,
    parent,
    catcher,
    by_name,
    awaiter,
    sleepy_parent,
]


@pytest.fixture
async def worker(address: str) -> AsyncIterator[Worker]:
    async with Worker(address, workflows=WORKFLOWS, suspend_after=None) as w:
        yield w


async def test_a_parent_awaits_its_children_and_a_replay_reattaches(worker: Worker, client: Client) -> None:
    parent_id = unique("parent")
    handle = await client.start_workflow(parent, [1, 2, 3], workflow_id=parent_id)
    assert await handle.result(timeout=20) == [2, 4, 6]
    # Two step IDs per call, taken at the call: the children's IDs follow from them.
    steps = sorted(await client.list_steps(parent_id), key=lambda s: int(s.step_id))
    kinds = [(s.step_id, s.kind, s.status) for s in steps]
    assert kinds == [
        (str(i), StepKind.START_CHILD if i % 2 else StepKind.AWAIT_WORKFLOW, StepStatus.SUCCEEDED)
        for i in range(1, 7)
    ]
    for step_id, x in (("1", 1), ("3", 2), ("5", 3)):
        info = await client.get_workflow(f"{parent_id}/{step_id}")
        assert (info.workflow_name, info.output, info.parent_workflow_id, info.parent_step_id) == (
            "kids.double",
            2 * x,
            parent_id,
            step_id,
        )
    assert effects == Counter({"double 1": 1, "double 2": 1, "double 3": 1})


async def test_a_childs_error_is_raised_in_the_parent(worker: Worker, client: Client) -> None:
    handle = await client.start_workflow(catcher, workflow_id=unique("catcher"))
    assert await handle.result(timeout=20) == "caught: no luck"
    [_, wait] = await client.list_steps(handle.workflow_id)
    assert (wait.kind, wait.status) == (StepKind.AWAIT_WORKFLOW, StepStatus.FAILED)
    assert wait.error is not None
    assert wait.error.type.endswith("ValueError")


async def test_a_child_started_by_name_is_served_by_another_worker(address: str, client: Client) -> None:
    async with (
        Worker(address, workflows=[by_name], suspend_after=None),
        Worker(address, workflows=[double], suspend_after=None),
    ):
        handle = await client.start_workflow(by_name, "kids.double", 21, None, workflow_id=unique("named"))
        child_id, result = await handle.result(timeout=20)
    assert result == 42
    assert child_id == f"{handle.workflow_id}/1"


async def test_a_fork_that_reuses_a_childs_start_awaits_that_same_child(
    worker: Worker, client: Client
) -> None:
    original = await client.start_workflow(by_name, "kids.double", 21, None, workflow_id=unique("orig"))
    assert await original.result(timeout=20) == [f"{original.workflow_id}/1", 42]
    fork = await client.fork(original.workflow_id, 2)  # copies the START_CHILD, not its wait
    assert await fork.result(timeout=20) == [f"{original.workflow_id}/1", 42]
    assert effects == Counter({"double 21": 1})  # one child, run once


async def test_a_child_id_taken_by_another_workflow_is_a_conflict(worker: Worker, client: Client) -> None:
    taken = await client.start_workflow(napping, 0.0, workflow_id=unique("taken"))
    handle = await client.start_workflow(by_name, "kids.double", 1, taken.workflow_id)
    with pytest.raises(WorkflowFailedError) as failed:
        await handle.result(timeout=20)
    assert failed.value.error_type.endswith("WorkflowConflictError")
    assert "exists already" in failed.value.message
    # The same ID under the same name is the same child: re-attached, not started twice.
    again = await client.start_workflow(by_name, "kids.napping", 0.0, taken.workflow_id)
    assert await again.result(timeout=20) == [taken.workflow_id, "rested"]


async def test_awaiting_an_unknown_workflow_fails_at_once(worker: Worker, client: Client) -> None:
    handle = await client.start_workflow(awaiter, "nobody-here", workflow_id=unique("awaiter"))
    with pytest.raises(WorkflowFailedError) as failed:
        await handle.result(timeout=20)
    assert failed.value.error_type.endswith("WorkflowNotFoundError")
    assert "does not exist" in failed.value.message


async def test_awaiting_a_finished_workflow_returns_its_output(worker: Worker, client: Client) -> None:
    done = await client.start_workflow(double, 5, workflow_id=unique("done"))
    assert await done.result(timeout=20) == 10
    handle = await client.start_workflow(awaiter, done.workflow_id, workflow_id=unique("awaiter"))
    assert await handle.result(timeout=20) == 10


async def test_a_suspended_parent_wakes_when_its_child_finishes(address: str, client: Client) -> None:
    async with Worker(address, workflows=WORKFLOWS, suspend_after=0):
        handle = await client.start_workflow(sleepy_parent, workflow_id=unique("sleepy"))
        assert await handle.result(timeout=20) == "rested"


async def test_a_parent_on_one_coordinator_wakes_when_its_child_ends_on_another(settings: Settings) -> None:
    quiet = replace(settings, sweep_ms=60_000)  # what wakes the parent is the hint, not a sweep
    a, b = await server.start(quiet), await server.start(quiet)
    client = Client(f"127.0.0.1:{a.port}")
    try:
        async with (
            Worker(f"127.0.0.1:{a.port}", workflows=[awaiter], suspend_after=None),
            Worker(f"127.0.0.1:{b.port}", workflows=[listening], suspend_after=None),
        ):
            target = await client.start_workflow(listening, workflow_id=unique("target"))
            handle = await client.start_workflow(awaiter, target.workflow_id, workflow_id=unique("awaiter"))

            async def parent_waits() -> bool:
                steps = await client.list_steps(handle.workflow_id)
                return any(s.status is StepStatus.WAITING for s in steps)

            await eventually(parent_waits, what="the parent waiting for the target")
            await client.send(target.workflow_id, "hello")
            assert await handle.result(timeout=20) == "hello"
    finally:
        await client.close()
        for r in (a, b):
            await r.stop(grace=0)
