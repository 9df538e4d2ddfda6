"""Workflows the e2e tests run in worker processes.

Every step body appends one line to the file named by SIDE_EFFECTS before it returns, so
tests can count how often each body really ran, by which worker, when it started. Lines
are tab-separated: workflow ID, step ID, worker name, attempt, start time, what.
STEP_DELAY slows steps down; VARIANT changes the code between runs.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

from worker_sdk import RetryPolicy, Workflow, current_step, step, workflow, workflow_id


def _line(workflow: str, step_id: str, attempt: int, when: float, text: str) -> None:
    worker = os.environ.get("WORKER_NAME", str(os.getpid()))
    line = f"{workflow}\t{step_id}\t{worker}\t{attempt}\t{when:.6f}\t{text}\n".encode()
    fd = os.open(os.environ["SIDE_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: whole lines, even across processes
    finally:
        os.close(fd)


def effect(text: str, started: float | None = None) -> None:
    """A step body's line."""
    ctx = current_step()
    assert ctx is not None
    _line(ctx.workflow_id, ctx.step_id, ctx.attempt, time.time() if started is None else started, text)


def note(text: str) -> None:
    """A line from workflow code itself (not a step body): step ID "-", attempt 0."""
    wf = workflow_id()
    assert wf is not None
    _line(wf, "-", 0, time.time(), text)


def delay() -> float:
    return float(os.environ.get("STEP_DELAY", "0"))


@step()
async def record(name: str) -> str:
    started = time.time()
    await asyncio.sleep(delay())
    effect(name, started)
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


@workflow()
async def sequence(n: int) -> list[str]:
    """n steps in a row, each STEP_DELAY long."""
    return [await record(f"s{i}") for i in range(n)]


BEGIN = "begin "


@step()
async def jittered(i: int) -> int:
    started = time.time()
    # Also marked at the start: a body cut short by a kill leaves this line alone, so the
    # chaos test sees every body that started, not only those that finished.
    effect(f"{BEGIN}j{i}", started)
    await asyncio.sleep(random.uniform(0.5, 1.5) * delay())
    effect(f"j{i}", started)
    return i * i


@workflow()
async def chaos(n: int) -> int:
    """The chaos test's load: n steps, some concurrent, with random delays."""
    total = sum([await jittered(i) for i in range(n // 2)])
    total += sum(await asyncio.gather(*(jittered(i) for i in range(n // 2, n))))
    return total


@step()
async def tick(i: int) -> int:
    effect(f"tick {i}")
    return i


@workflow()
async def ticker(n: int, every: float) -> list[int]:
    """Calls a step every ``every`` seconds without waiting for the ones before it."""
    calls = []
    for i in range(n):
        note(f"call {i}")
        calls.append(asyncio.create_task(tick(i)))
        await asyncio.sleep(every)
    return list(await asyncio.gather(*calls))


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


@step(
    retry=RetryPolicy(
        max_attempts=3, initial_interval=float(os.environ.get("BACKOFF", "0.01")), non_retryable=(Fatal,)
    )
)
async def flaky(succeed_on: int, fatal: bool = False) -> str:
    ctx = current_step()
    assert ctx is not None
    effect(f"attempt {ctx.attempt}")
    if fatal:
        raise Fatal("no point retrying")
    if ctx.attempt < succeed_on:
        raise Flaky(f"attempt {ctx.attempt} failed")
    return f"succeeded on attempt {ctx.attempt}"


@workflow()
async def retrying(succeed_on: int, fatal: bool = False) -> str:
    try:
        return await flaky(succeed_on, fatal)
    except (Flaky, Fatal) as exc:
        return f"gave up: {type(exc).__name__}: {exc}"


@step()
async def suicide() -> None:
    effect("suicide")
    os.kill(os.getpid(), signal.SIGKILL)


@workflow()
async def poison() -> None:
    await suicide()


ALL: list[Workflow[Any, Any]] = [
    twenty_steps,
    helpers_gather,
    helpers_task_group,
    evolving,
    sequence,
    ticker,
    chaos,
    retrying,
    poison,
]
