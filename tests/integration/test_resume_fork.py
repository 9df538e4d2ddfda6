"""Resume and fork through a real coordinator and PostgreSQL, with workers in this process."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.processes import eventually
from tests.ids import unique
from worker_sdk import (
    Client,
    InvalidArgumentError,
    SteplineError,
    StepStatus,
    Worker,
    Workflow,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowStatus,
    recv,
    sleep,
    step,
    workflow,
)

effects: Counter[str] = Counter()
bug = {"present": True}


@pytest.fixture(autouse=True)
def _clear() -> None:
    effects.clear()
    bug["present"] = True


@step()
async def first() -> int:
    effects["first"] += 1
    return 1


@step()
async def second() -> int:
    effects["second"] += 1
    return 2


@step()
async def third() -> int:
    effects["third"] += 1
    if bug["present"]:
        raise RuntimeError("the bug")
    return 3


@workflow(name="rf.three")
async def three() -> int:
    return await first() + await second() + await third()


@workflow(name="rf.napper")
async def napper(seconds: float) -> str:
    await first()
    await sleep(seconds)
    await second()
    return "awake"


WORKFLOWS: list[Workflow[Any, Any]] = [three, napper]


@pytest.fixture
async def worker(address: str) -> AsyncIterator[Worker]:
    async with Worker(address, workflows=WORKFLOWS, suspend_after=0) as w:
        yield w


async def failed_run(client: Client) -> str:
    handle = await client.start_workflow(three, workflow_id=unique("three"))
    with pytest.raises(WorkflowFailedError):
        await handle.result(timeout=20)
    return handle.workflow_id


async def test_resume_of_a_failed_workflow_reruns_only_what_failed(worker: Worker, client: Client) -> None:
    workflow_id = await failed_run(client)
    bug["present"] = False
    handle = await client.resume(workflow_id)
    assert handle.workflow_id == workflow_id
    assert await handle.result(timeout=20) == 6
    assert effects == Counter({"first": 1, "second": 1, "third": 2})
    info = await client.get_workflow(workflow_id)
    assert (info.status, info.error, info.recovery_attempts) == (WorkflowStatus.SUCCEEDED, None, 0)


async def test_a_fork_after_a_fixed_bug_reuses_the_steps_before_it(worker: Worker, client: Client) -> None:
    workflow_id = await failed_run(client)
    bug["present"] = False
    fork = await client.fork(workflow_id, 3)
    assert await fork.result(timeout=20) == 6
    assert effects == Counter({"first": 1, "second": 1, "third": 2})
    copied = sorted((s.step_id, s.status) for s in await client.list_steps(fork.workflow_id))
    assert copied == [("1", StepStatus.SUCCEEDED), ("2", StepStatus.SUCCEEDED), ("3", StepStatus.SUCCEEDED)]
    assert (await client.get_workflow(workflow_id)).status is WorkflowStatus.FAILED  # left as it was
    # From the first step, nothing is reused.
    again = await client.fork(workflow_id, "1", new_workflow_id=unique("again"))
    assert await again.result(timeout=20) == 6
    assert effects == Counter({"first": 2, "second": 2, "third": 3})


async def test_a_cancelled_sleeping_workflow_resumes_and_sleeps_what_is_left(
    worker: Worker, client: Client
) -> None:
    handle = await client.start_workflow(napper, 0.5, workflow_id=unique("nap"))

    async def suspended() -> bool:
        return (await client.get_workflow(handle.workflow_id)).suspended

    await eventually(suspended, what="the sleep suspended")
    await client.cancel(handle.workflow_id)
    await client.resume(handle.workflow_id)
    assert await handle.result(timeout=20) == "awake"
    assert effects == Counter({"first": 1, "second": 1})


async def test_a_timed_out_workflow_resumes_without_its_deadline(worker: Worker, client: Client) -> None:
    handle = await client.start_workflow(napper, 1.0, workflow_id=unique("late"), timeout=0.2)
    with pytest.raises(WorkflowFailedError):
        await handle.result(timeout=20)
    assert (await client.get_workflow(handle.workflow_id)).status is WorkflowStatus.TIMED_OUT
    await client.resume(handle.workflow_id)
    assert await handle.result(timeout=20) == "awake"
    assert (await client.get_workflow(handle.workflow_id)).deadline is None


async def test_bad_resumes_and_forks_are_refused(worker: Worker, client: Client) -> None:
    done = await client.start_workflow(napper, 0.0, workflow_id=unique("done"))
    assert await done.result(timeout=20) == "awake"
    with pytest.raises(SteplineError, match="only FAILED, CANCELLED"):
        await client.resume(done.workflow_id)
    with pytest.raises(WorkflowNotFoundError):
        await client.resume("nobody")
    with pytest.raises(WorkflowNotFoundError):
        await client.fork("nobody", 1)
    with pytest.raises(InvalidArgumentError, match="has no step '9'"):
        await client.fork(done.workflow_id, 9)
    with pytest.raises(SteplineError, match="exists already"):
        await client.fork(done.workflow_id, 1, new_workflow_id=done.workflow_id)


@step()
async def renamed_first() -> int:
    effects["renamed"] += 1
    return 1


@workflow(name="rf.evolving")
async def evolving_v1() -> Any:
    await first()
    return await recv()


@workflow(name="rf.evolving")
async def evolving_v2() -> Any:
    await renamed_first()  # a change that breaks the runs in flight
    return await recv()


async def test_a_non_determinism_error_pauses_the_run_and_resume_on_fixed_code_finishes_it(
    address: str, client: Client
) -> None:
    async with Worker(address, workflows=[evolving_v1], suspend_after=None):
        handle = await client.start_workflow(evolving_v1, workflow_id=unique("evolving"))

        async def waits() -> bool:
            return any(s.status is StepStatus.WAITING for s in await client.list_steps(handle.workflow_id))

        await eventually(waits, what="the recv waiting")
    async with Worker(address, workflows=[evolving_v2], suspend_after=None):

        async def paused() -> bool:
            return (await client.get_workflow(handle.workflow_id)).status is WorkflowStatus.PAUSED

        await eventually(paused, what="the run paused")
    info = await client.get_workflow(handle.workflow_id)
    assert info.error is not None
    assert info.error.type == "stepline.NonDeterminismError"
    assert "'1'" in info.error.message
    assert first.name in info.error.message
    assert renamed_first.name in info.error.message
    async with Worker(address, workflows=[evolving_v1], suspend_after=None):
        await client.resume(handle.workflow_id)
        await client.send(handle.workflow_id, "hello")
        assert await handle.result(timeout=20) == "hello"
    assert effects == Counter({"first": 1})
