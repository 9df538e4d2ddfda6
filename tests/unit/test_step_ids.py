"""Step IDs are taken at the call, per task scope, and are the same on every run."""

from __future__ import annotations

import asyncio
import random

import pytest

from worker_sdk import NonDeterminismError, current_step, step, workflow
from worker_sdk.testing import Crashed, InMemoryRecorder

calls: list[tuple[str, str, int]] = []


@step()
async def work(helper: int, j: int) -> str:
    await asyncio.sleep(random.uniform(0, 0.003))
    ctx = current_step()
    assert ctx is not None
    calls.append((ctx.step_id, f"{helper}.{j}", ctx.attempt))
    return f"{helper}.{j}"


async def helper(i: int) -> list[str]:
    return [await work(i, j) for j in range(3)]


@workflow()
async def helpers_under_gather() -> list[list[str]]:
    return list(await asyncio.gather(*(helper(i) for i in range(10))))


@workflow()
async def helpers_in_task_group() -> list[list[str]]:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(helper(i)) for i in range(10)]
    return [t.result() for t in tasks]


@step()
async def plain(x: int) -> int:
    return x


@workflow()
async def mixed() -> list[int]:
    first = await plain(1)
    gathered = await asyncio.gather(plain(2), plain(3))
    task = asyncio.create_task(plain(4))
    return [first, *gathered, await task, await plain(5)]


EXPECTED = [[f"{i}.{j}" for j in range(3)] for i in range(10)]


def ids_by_call() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for step_id, call, _ in calls:
        found.setdefault(call, set()).add(step_id)
    return found


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()


@pytest.mark.parametrize("wf", [helpers_under_gather, helpers_in_task_group])
async def test_helpers_get_the_same_ids_whatever_order_they_finish_in(wf: object) -> None:
    runs = []
    for seed in (1, 2, 3):
        random.seed(seed)
        calls.clear()
        assert await InMemoryRecorder().run(wf) == EXPECTED  # type: ignore[arg-type]
        runs.append(ids_by_call())
    assert runs[0] == runs[1] == runs[2]
    # Each helper task has its own scope: helper i's j-th call is "t{i+1}/{j+1}".
    assert runs[0] == {f"{i}.{j}": {f"t{i + 1}/{j + 1}"} for i in range(10) for j in range(3)}


@pytest.mark.parametrize("wf", [helpers_under_gather, helpers_in_task_group])
async def test_recovery_replays_recorded_steps_and_runs_the_rest_once(wf: object) -> None:
    recorder = InMemoryRecorder()
    random.seed(7)
    with pytest.raises(Crashed):
        await recorder.run(wf, workflow_id="w", crash_after_steps=12)  # type: ignore[arg-type]
    first_ids = ids_by_call()
    done_before = {s for s, r in recorder.runs["w"].steps.items() if r.status.value == "SUCCEEDED"}
    assert len(done_before) >= 12
    random.seed(8)  # different timing on the second run
    calls.clear()
    assert await recorder.run(wf, workflow_id="w") == EXPECTED  # type: ignore[arg-type]
    rerun = {step_id for step_id, _, _ in calls}
    assert not rerun & done_before, "a recorded step ran again"
    assert len(recorder.runs["w"].steps) == 30
    # Same call, same ID, in both executions.
    for call, ids in ids_by_call().items():
        assert ids == first_ids.get(call, ids)


async def test_steps_wrapped_in_tasks_take_ids_in_the_callers_scope() -> None:
    recorder = InMemoryRecorder()
    assert await recorder.run(mixed, workflow_id="m") == [1, 2, 3, 4, 5]
    assert list(recorder.runs["m"].steps) == ["1", "2", "3", "4", "5"]


@step()
async def alpha() -> str:
    return "a"


@step()
async def beta() -> str:
    return "b"


variant = {"first": alpha}


@workflow()
async def shifting() -> str:
    return await variant["first"]() + await beta()


async def test_a_recorded_id_under_another_name_is_a_nondeterminism_error() -> None:
    recorder = InMemoryRecorder()
    variant["first"] = alpha
    with pytest.raises(Crashed):
        await recorder.run(shifting, workflow_id="n", crash_after_steps=1)
    variant["first"] = beta
    with pytest.raises(NonDeterminismError) as caught:
        await recorder.run(shifting, workflow_id="n")
    assert (caught.value.step_id, caught.value.recorded_name, caught.value.called_name) == (
        "1",
        alpha.name,
        beta.name,
    )
    assert "'1'" in str(caught.value)
    assert "alpha" in str(caught.value)
    assert "beta" in str(caught.value)


@workflow()
async def swallowing() -> str:
    try:
        await variant["first"]()
    except NonDeterminismError:
        return "pretending all is well"
    return "ok"


async def test_catching_the_nondeterminism_error_does_not_save_the_workflow() -> None:
    recorder = InMemoryRecorder()
    variant["first"] = alpha
    assert await recorder.run(swallowing, workflow_id="s") == "ok"
    variant["first"] = beta
    with pytest.raises(NonDeterminismError):
        await recorder.run(swallowing, workflow_id="s")


async def test_steps_outside_workflows_are_plain_calls() -> None:
    assert await plain(9) == 9
    assert current_step() is None


class Declined(Exception):
    pass


@step()
async def declines() -> None:
    raise Declined("card declined")


@step()
async def after() -> str:
    return "after"


@workflow()
async def handles_failure() -> str:
    try:
        await declines()
    except Declined as exc:
        return f"handled {exc}: " + await after()
    return "unreachable"


async def test_a_recorded_failure_replays_as_the_same_error_without_running_again() -> None:
    recorder = InMemoryRecorder()
    with pytest.raises(Crashed):
        await recorder.run(handles_failure, workflow_id="f", crash_after_steps=1)
    assert recorder.runs["f"].steps["1"].status.value == "FAILED"
    assert await recorder.run(handles_failure, workflow_id="f") == "handled card declined: after"
    assert recorder.runs["f"].starts == {"1": 1, "2": 1}
