"""worker_sdk.replay on hand-made histories: each verdict, without a coordinator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker_sdk import StepStatus, WorkflowStatus, step, workflow
from worker_sdk._models import StepInfo, WorkflowInfo
from worker_sdk.replay import replay

ran: list[str] = []


@step()
async def one() -> int:
    ran.append("one")
    return 1


@step()
async def two() -> int:
    ran.append("two")
    return 2


@workflow(name="rv.both")
async def both() -> int:
    return await one() + await two()


@workflow(name="rv.first_only")
async def first_only() -> int:
    return await one()


def info(status: WorkflowStatus) -> WorkflowInfo:
    now = datetime.now(UTC)
    return WorkflowInfo(
        "w", "rv", status, {"args": [], "kwargs": {}}, None, None, None, 1, 0, now, now, now, None
    )


def recorded(*names: str) -> list[StepInfo]:
    return [
        StepInfo(str(i), name, StepStatus.SUCCEEDED, i, None, 1, "w1", 1, None, None)
        for i, name in enumerate(names, start=1)
    ]


async def test_the_same_path_is_compatible_and_runs_no_step_body() -> None:
    ran.clear()
    verdict = await replay(both, info(WorkflowStatus.SUCCEEDED), recorded(one.name, two.name))
    assert verdict.compatible
    assert ran == []


async def test_an_unfinished_run_is_compatible_up_to_where_its_history_ends() -> None:
    ran.clear()
    verdict = await replay(both, info(WorkflowStatus.RUNNING), recorded(one.name))
    assert verdict.compatible
    assert ran == []  # the frontier stops the replay before two's body


async def test_a_finished_run_whose_code_now_does_more_diverges() -> None:
    verdict = await replay(both, info(WorkflowStatus.SUCCEEDED), recorded(one.name))
    assert (verdict.compatible, verdict.step_id) == (False, "(after the last)")


async def test_a_recorded_step_the_code_no_longer_calls_diverges_there() -> None:
    verdict: Any = await replay(first_only, info(WorkflowStatus.SUCCEEDED), recorded(one.name, two.name))
    assert (verdict.compatible, verdict.step_id, verdict.recorded, verdict.called) == (
        False,
        "2",
        two.name,
        None,
    )


async def test_another_step_name_diverges_with_both_names() -> None:
    verdict = await replay(both, info(WorkflowStatus.SUCCEEDED), recorded(two.name, two.name))
    assert (verdict.compatible, verdict.step_id, verdict.recorded, verdict.called) == (
        False,
        "1",
        two.name,
        one.name,
    )
