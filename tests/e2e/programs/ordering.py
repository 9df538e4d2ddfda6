"""A workflow that races steps with worker_sdk.as_completed and wait, for the e2e test that
their recorded order survives a SIGKILL (effects: see flows.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.programs.flows import effect
from worker_sdk import Workflow, as_completed, recv, step, wait, workflow


@step()
async def racer(name: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    effect(f"racer {name}")
    return name


@workflow(name="e2e.racing")
async def racing() -> list[Any]:
    racers = [racer("slow", 0.4), racer("fast", 0.0), racer("mid", 0.2)]
    seen = [await item for item in as_completed(racers)]
    done, _ = await wait([racer("late", 0.4), racer("early", 0.0)])
    first = sorted(d.result() for d in done)
    await record_order(f"{seen} {first}")
    await recv("go")
    return [seen, first]


@step()
async def record_order(order: str) -> None:
    effect(f"order {order}")


ORDERING: list[Workflow[Any, Any]] = [racing]
