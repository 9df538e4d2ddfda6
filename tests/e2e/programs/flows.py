"""Workflows the e2e tests run in worker processes.

Every step body appends one line to the file named by SIDE_EFFECTS before it returns, so
tests can count how often each body really ran. STEP_DELAY slows steps down; VARIANT
changes the code between runs.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from worker_sdk import Workflow, current_step, step, workflow


def effect(text: str) -> None:
    ctx = current_step()
    assert ctx is not None
    line = f"{ctx.workflow_id}\t{ctx.step_id}\t{text}\n".encode()
    fd = os.open(os.environ["SIDE_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: whole lines, even across processes
    finally:
        os.close(fd)


def delay() -> float:
    return float(os.environ.get("STEP_DELAY", "0"))


@step()
async def record(name: str) -> str:
    await asyncio.sleep(delay())
    effect(name)
    return f"{name}-done"


@workflow()
async def twenty_steps(tag: str) -> list[str]:
    results = [await record(f"{tag}-seq-{i}") for i in range(10)]
    results += await asyncio.gather(*(record(f"{tag}-par-{i}") for i in range(10)))
    return results


@step()
async def jittery(helper: int, j: int) -> str:
    await asyncio.sleep(random.uniform(0, 2 * delay()))
    effect(f"{helper}.{j}")
    return f"{helper}.{j}"


async def helper(i: int) -> list[str]:
    return [await jittery(i, j) for j in range(3)]


@workflow()
async def helpers_gather() -> list[list[str]]:
    return list(await asyncio.gather(*(helper(i) for i in range(10))))


@workflow()
async def helpers_task_group() -> list[list[str]]:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(helper(i)) for i in range(10)]
    return [t.result() for t in tasks]


@step()
async def alpha() -> str:
    effect("alpha")
    return "alpha"


@step()
async def beta() -> str:
    effect("beta")
    return "beta"


@step()
async def hang() -> str:
    await asyncio.sleep(3600)
    return "never"


@workflow()
async def evolving() -> str:
    first = await (alpha() if os.environ.get("VARIANT", "a") == "a" else beta())
    return first + await hang()


ALL: list[Workflow[Any, Any]] = [twenty_steps, helpers_gather, helpers_task_group, evolving]
