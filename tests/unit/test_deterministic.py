"""now, random, uuid4, wait and as_completed replay what the first run saw (InMemoryRecorder)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from worker_sdk import as_completed, now, random, step, uuid4, wait, workflow
from worker_sdk.testing import Crashed, InMemoryRecorder

delays: dict[str, float] = {}


@step()
async def racer(name: str) -> str:
    await asyncio.sleep(delays[name])
    return name


@workflow(name="det.values")
async def values() -> list[Any]:
    when, number, ident = await now(), await random(), await uuid4()
    await racer("end")
    return [when.isoformat(), number, str(ident)]


@workflow(name="det.orders")
async def orders() -> list[Any]:
    seen = [await item for item in as_completed([racer("slow"), racer("fast"), racer("mid")])]
    done, pending = await wait([racer("late"), racer("early")])
    first = [d.result() for d in done]
    await asyncio.gather(*pending)
    await racer("end")
    return [seen, first]


@pytest.fixture(autouse=True)
def _delays() -> None:
    delays.clear()
    delays.update(end=0.0)


async def test_now_random_and_uuid4_are_recorded_once() -> None:
    recorder = InMemoryRecorder()
    with pytest.raises(Crashed):
        await recorder.run(values, crash_after_steps=3)
    replayed = await recorder.run(values)
    steps = recorder.runs["test-workflow"].steps
    assert [s.step_name for s in steps.values()] == [
        "stepline.now",
        "stepline.random",
        "stepline.uuid4",
        racer.name,
    ]
    recorded = [steps["1"].output, steps["2"].output, steps["3"].output]
    assert replayed[1] == float(recorded[1].data)  # type: ignore[union-attr]
    assert replayed[0] in recorded[0].data.decode()  # type: ignore[union-attr]
    assert replayed[2] in recorded[2].data.decode()  # type: ignore[union-attr]


async def test_wait_and_as_completed_replay_the_order_they_saw() -> None:
    delays.update(slow=0.15, fast=0.0, mid=0.05, late=0.15, early=0.0)
    recorder = InMemoryRecorder()
    with pytest.raises(Crashed):
        await recorder.run(orders, crash_after_steps=10)
    # Replayed, every recorded result is there at once, in the order of the calls; the
    # helpers hand them out in the order the first run saw.
    delays.update(slow=0.0, fast=0.1, mid=0.05, late=0.0, early=0.1)
    assert await recorder.run(orders) == [["fast", "mid", "slow"], ["early"]]


async def test_asyncio_wait_in_workflow_code_warns_with_its_place(caplog: pytest.LogCaptureFixture) -> None:
    @workflow(name="det.stdlib")
    async def stdlib() -> int:
        done, _ = await asyncio.wait([asyncio.ensure_future(racer("end"))])
        return len(done)

    with caplog.at_level(logging.WARNING, logger="worker_sdk"):
        assert await InMemoryRecorder().run(stdlib) == 1
    [warning] = [r for r in caplog.records if "asyncio.wait" in r.getMessage()]
    assert f"{__file__}:" in warning.getMessage()
    assert "use worker_sdk.wait" in warning.getMessage()
