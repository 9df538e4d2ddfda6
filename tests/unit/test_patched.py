"""patched: old histories keep the old path, new runs take the new one, decided once."""

from __future__ import annotations

from collections import Counter

import pytest

from worker_sdk import patched, step, workflow
from worker_sdk.testing import Crashed, InMemoryRecorder

ran: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()


@step()
async def first() -> str:
    ran["first"] += 1
    return "first"


@step()
async def old_way() -> str:
    ran["old"] += 1
    return "old"


@step()
async def new_way() -> str:
    ran["new"] += 1
    return "new"


@workflow(name="pt.flow")
async def v1() -> list[str]:
    return [await first(), await old_way(), await first()]


@workflow(name="pt.flow")
async def v2() -> list[str]:
    head = await first()
    middle = await (new_way() if await patched("new-way") else old_way())
    return [head, middle, await first()]


async def test_a_history_made_before_the_change_keeps_the_old_path() -> None:
    recorder = InMemoryRecorder()
    with pytest.raises(Crashed):
        await recorder.run(v1, crash_after_steps=2)  # first and old_way recorded by v1
    assert await recorder.run(v2) == ["first", "old", "first"]
    assert ran == Counter({"first": 2, "old": 1})
    assert "patch:new-way" not in recorder.runs["test-workflow"].steps


async def test_a_new_run_takes_the_new_path_and_its_replay_too() -> None:
    recorder = InMemoryRecorder()
    with pytest.raises(Crashed):
        await recorder.run(v2, crash_after_steps=3)  # first, the patch, new_way
    steps = recorder.runs["test-workflow"].steps
    assert steps["patch:new-way"].step_name == "stepline.patched"
    assert await recorder.run(v2) == ["first", "new", "first"]
    assert ran == Counter({"first": 2, "new": 1})


async def test_a_run_that_had_not_reached_the_change_takes_the_new_path() -> None:
    recorder = InMemoryRecorder()
    with pytest.raises(Crashed):
        await recorder.run(v1, crash_after_steps=1)
    assert await recorder.run(v2) == ["first", "new", "first"]
